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
  /* x - remainder is a multiple of 2^exponent: exact (floor) division. */
  const int32_t floor_q =
      (int32_t)(((int64_t)x - remainder) / ((int64_t)1 << exponent));
  return floor_q + (remainder > threshold ? 1 : 0);
}

/* The left shift wraps in two's complement, as TFLite's int32 multiply. */
static inline int32_t tk_requantize(int32_t x, int32_t multiplier,
                                    int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  const int32_t shifted = (int32_t)((uint32_t)x << left);
  return tk_rdbpot(tk_srdhm(shifted, multiplier), right);
}

static inline int8_t tk_clamp_s8(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* ---- kernels ---- */

int32_t tk_convolve_s8_get_buffer_size(const tk_dims *filter, int32_t tile);
int32_t tk_convolve_s8(const tk_conv_params *p, const tk_requant *q,
                       const tk_dims *in, const int8_t *input,
                       const tk_dims *filter, const int8_t *filter_data,
                       const int32_t *bias, const tk_dims *out, int8_t *output,
                       int16_t *scratch, int32_t scratch_bytes);

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

#endif /* TK_H_ */
