/* TinyEngine microkernels: int8 (TFLite semantics), NHWC activations, OHWI
 * conv filters, [kh][kw][C] depthwise filters, [O][I] fully-connected
 * weights. C99; no malloc, no globals; every kernel returns a status code and
 * takes its scratch memory from the caller.
 */
#ifndef TK_H_
#define TK_H_

#include <stdint.h>

#define TK_OK 0
#define TK_ERR_ARG (-1)     /* null pointer, bad dimension or parameter */
#define TK_ERR_SCRATCH (-2) /* scratch buffer too small */

/* @cdef-begin: the types and kernels below are also the cffi declarations
 * (build_ckernels.py reads them from here). */
typedef struct {
  int32_t n, h, w, c;
} tk_dims;

/* Convolution geometry and quantization shared by the conv kernels. */
typedef struct {
  int32_t stride;
  int32_t pad_top, pad_left;   /* bottom/right padding follows from out dims */
  int32_t input_zp;            /* subtracted from every input value */
  int32_t output_zp;           /* added after requantization */
  int32_t act_min, act_max;    /* fused activation clamp, within [-128, 127] */
} tk_conv_params;

/* Per output channel requantization: real multiplier = m * 2^(shift - 31). */
typedef struct {
  const int32_t *multiplier;
  const int32_t *shift;
} tk_requant;

typedef struct {
  int32_t a_zp, b_zp, output_zp;
  int32_t a_multiplier, a_shift, b_multiplier, b_shift;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} tk_add_params;

/* One op of the interpreter baseline (tk_interp_s8.c). Offsets are into the
 * caller's arena; `scratch` is this op's im2col buffer there. */
enum { TK_OP_CONV = 1, TK_OP_DEPTHWISE = 2, TK_OP_FC = 3, TK_OP_AVGPOOL = 4,
       TK_OP_ADD = 5 };
typedef struct {
  int32_t kind;
  int32_t input, input2, output, scratch, scratch_bytes;
  tk_conv_params params;
  tk_requant requant;
  tk_add_params add;
  tk_dims in_dims, filter_dims, out_dims;
  const int8_t *weights;
  const int32_t *bias;
} tk_op;

/* @cdef-end */

#define TK_ADD_LEFT_SHIFT 20

/* ---- requantization helpers (gemmlowp / TFLite definitions) ---- */

static inline int32_t tk_srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  {
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* truncates to 0 */
  }
}

static inline int32_t tk_rdbpot(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  /* floor(x / 2^exponent) as an arithmetic shift spelled with unsigned
   * operations (a signed right shift of a negative value is
   * implementation-defined in C99; a 64-bit division would be slow). */
  uint32_t q = (uint32_t)x >> exponent;
  if (x < 0 && exponent > 0) q |= ~(UINT32_MAX >> exponent);
  return (int32_t)q + (remainder > threshold ? 1 : 0);
}

/* tk_srdhm for b >= 0 (every Q31 multiplier): a == b == INT32_MIN cannot
 * happen, so the saturation test is dropped. */
static inline int32_t tk_srdhm_nonneg(int32_t a, int32_t b) {
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* The left shift wraps in two's complement, as TFLite's int32 multiply.
 * `multiplier` must be >= 0 (the kernels check it). */
static inline int32_t tk_requantize(int32_t x, int32_t multiplier,
                                    int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  const int32_t shifted = (int32_t)((uint32_t)x << left);
  return tk_rdbpot(tk_srdhm_nonneg(shifted, multiplier), right);
}

/* Branch-free tk_requantize (no data-dependent branches to mispredict, and
 * simple enough for the compiler to vectorise loops of it). Bit-exact with
 * tk_requantize; it relies on arithmetic right shifts of negative values,
 * which every C99 compiler for our targets (GCC, Clang, arm-none-eabi, IAR)
 * implements. */
static inline int32_t tk_requantize_bf(int32_t acc, int32_t multiplier,
                                       int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  const int32_t x = (int32_t)((uint32_t)acc << left);
  const int64_t ab = (int64_t)x * multiplier;
  const int64_t sign = ab >> 63;                     /* 0 or -1 */
  const int64_t sum = ab + ((int64_t)1 << 30) - (sign & (((int64_t)1 << 31) - 1));
  /* Truncating division by 2^31: add 2^31 - 1 to negatives first. */
  const int32_t hi =
      (int32_t)((sum + ((sum >> 63) & (((int64_t)1 << 31) - 1))) >> 31);
  const int32_t mask = (int32_t)(((int64_t)1 << right) - 1);
  const int32_t rem = hi & mask;
  const int32_t thr = (mask >> 1) - (hi >> 31);
  return (hi >> right) + (rem > thr);
}

/* tk_requantize_bf over a block of accumulators with per-channel
 * parameters, plus zero point and clamp (the optimised kernels' hot loop). */
static inline void tk_requantize_block(const int32_t *acc, int32_t n,
                                       const int32_t *multiplier,
                                       const int32_t *shift, int32_t zp,
                                       int32_t act_min, int32_t act_max,
                                       int8_t *dst) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    int32_t v = tk_requantize_bf(acc[i], multiplier[i], shift[i]) + zp;
    v = v < act_min ? act_min : v;
    v = v > act_max ? act_max : v;
    dst[i] = (int8_t)v;
  }
}

static inline int8_t tk_clamp_s8(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* ---- kernels ---- */
/* @cdef-begin */

int32_t tk_convolve_s8_get_buffer_size(const tk_dims *filter, int32_t tile);
int32_t tk_convolve_s8(const tk_conv_params *p, const tk_requant *q,
                       const tk_dims *in, const int8_t *input,
                       const tk_dims *filter, const int8_t *filter_data,
                       const int32_t *bias, const tk_dims *out, int8_t *output,
                       int16_t *scratch, int32_t scratch_bytes);

int32_t tk_convolve_4ch_s8(const tk_conv_params *p, const tk_requant *q,
                           const tk_dims *in, const int8_t *input,
                           const tk_dims *filter, const int8_t *filter_data,
                           const int32_t *bias, const tk_dims *out,
                           int8_t *output, int16_t *scratch,
                           int32_t scratch_bytes);
int32_t tk_convolve_1x1_s8(const tk_conv_params *p, const tk_requant *q,
                           const tk_dims *in, const int8_t *input,
                           const tk_dims *filter, const int8_t *filter_data,
                           const int32_t *bias, const tk_dims *out,
                           int8_t *output);
int32_t tk_convolve_1x1_4ch_s8(const tk_conv_params *p, const tk_requant *q,
                               const tk_dims *in, const int8_t *input,
                               const tk_dims *filter, const int8_t *filter_data,
                               const int32_t *bias, const tk_dims *out,
                               int8_t *output);

int32_t tk_depthwise_conv_s8(const tk_conv_params *p, const tk_requant *q,
                             const tk_dims *in, const int8_t *input,
                             const tk_dims *filter, const int8_t *filter_data,
                             const int32_t *bias, const tk_dims *out,
                             int8_t *output);
int32_t tk_depthwise_conv_unrolled_s8(const tk_conv_params *p,
                                      const tk_requant *q, const tk_dims *in,
                                      const int8_t *input,
                                      const tk_dims *filter,
                                      const int8_t *filter_data,
                                      const int32_t *bias, const tk_dims *out,
                                      int8_t *output);
int32_t tk_depthwise_conv_inplace_s8_get_buffer_size(const tk_conv_params *p,
                                                     const tk_dims *in,
                                                     const tk_dims *filter,
                                                     const tk_dims *out);
int32_t tk_depthwise_conv_inplace_s8(const tk_conv_params *p,
                                     const tk_requant *q, const tk_dims *in,
                                     int8_t *buffer, const tk_dims *filter,
                                     const int8_t *filter_data,
                                     const int32_t *bias, const tk_dims *out,
                                     int8_t *scratch, int32_t scratch_bytes);

int32_t tk_fully_connected_s8(int32_t input_zp, int32_t output_zp,
                              int32_t act_min, int32_t act_max,
                              const tk_requant *q, int32_t batch,
                              int32_t in_features, const int8_t *input,
                              int32_t out_features, const int8_t *weights,
                              const int32_t *bias, int8_t *output);

int32_t tk_avgpool_s8(const tk_dims *in, const int8_t *input, int32_t act_min,
                      int32_t act_max, int8_t *output);

int32_t tk_add_s8(const tk_add_params *p, int32_t size, const int8_t *a,
                  const int8_t *b, int8_t *output);

/* Runs `num_ops` ops in order, each through the generic kernels (plain, or
 * the optimised variants when `optimised` is nonzero). */
int32_t tk_interp_invoke(const tk_op *ops, int32_t num_ops, int8_t *arena,
                         int32_t optimised);
/* The same for `n` inputs: copies each into the arena, runs, copies the
 * output out. */
int32_t tk_interp_invoke_batch(const tk_op *ops, int32_t num_ops,
                               int8_t *arena, int32_t optimised, int32_t n,
                               const int8_t *inputs, int32_t input_offset,
                               int32_t input_bytes, int8_t *outputs,
                               int32_t output_offset, int32_t output_bytes);

/* @cdef-end */

#endif /* TK_H_ */
