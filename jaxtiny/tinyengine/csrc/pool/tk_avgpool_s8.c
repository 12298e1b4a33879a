/* Global average pool [N,H,W,C] -> [N,C]; input and output share their
 * quantization, so the result is the sum / (H*W) rounded half away from
 * zero, clamped. */
#include "tk_internal.h"

int32_t tk_avgpool_s8(const tk_dims *in, const int8_t *input, int32_t act_min,
                      int32_t act_max, int8_t *output) {
  int32_t b, c, count, half;
  int64_t i;
  if (input == 0 || output == 0 || !tk__dims_ok(in) ||
      !tk__int8_range_ok(act_min, act_max))
    return TK_ERR_ARG;
  count = in->h * in->w;
  half = count / 2;
  for (b = 0; b < in->n; ++b) {
    const int8_t *x = input + (int64_t)b * count * in->c;
    for (c = 0; c < in->c; ++c) {
      int32_t sum = 0, avg;
      for (i = 0; i < count; ++i) sum += x[i * in->c + c];
      avg = sum >= 0 ? (sum + half) / count : -((-sum + half) / count);
      output[(int64_t)b * in->c + c] = tk_clamp_s8(avg, act_min, act_max);
    }
  }
  return TK_OK;
}
