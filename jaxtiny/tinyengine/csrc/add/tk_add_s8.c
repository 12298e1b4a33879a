/* Residual add with requantization of both inputs (TFLite int8 ADD): each
 * input, centred and shifted left by 20 bits, is rescaled to twice the larger
 * input scale; the sum is rescaled to the output. */
#include "tk_internal.h"

int32_t tk_add_s8(const tk_add_params *p, int32_t size, const int8_t *a,
                  const int8_t *b, int8_t *output) {
  int32_t i;
  if (p == 0 || a == 0 || b == 0 || output == 0 || size < 1 ||
      !tk__int8_range_ok(p->act_min, p->act_max) || p->a_zp < -128 ||
      p->a_zp > 127 || p->b_zp < -128 || p->b_zp > 127 ||
      p->output_zp < -128 || p->output_zp > 127 || p->a_multiplier < 0 ||
      p->b_multiplier < 0 || p->output_multiplier < 0 || p->a_shift < -31 ||
      p->a_shift > 30 || p->b_shift < -31 || p->b_shift > 30 ||
      p->output_shift < -31 || p->output_shift > 30)
    return TK_ERR_ARG;
  for (i = 0; i < size; ++i) {
    const int32_t va = ((int32_t)a[i] - p->a_zp) * (1 << TK_ADD_LEFT_SHIFT);
    const int32_t vb = ((int32_t)b[i] - p->b_zp) * (1 << TK_ADD_LEFT_SHIFT);
    const int32_t sa = tk_requantize(va, p->a_multiplier, p->a_shift);
    const int32_t sb = tk_requantize(vb, p->b_multiplier, p->b_shift);
    const int32_t raw =
        tk_requantize(sa + sb, p->output_multiplier, p->output_shift) +
        p->output_zp;
    output[i] = tk_clamp_s8(raw, p->act_min, p->act_max);
  }
  return TK_OK;
}
