/* Fully connected int8 layer, weights [O][I], per-output-channel
 * requantization. */
#include "tk_internal.h"

int32_t tk_fully_connected_s8(int32_t input_zp, int32_t output_zp,
                              int32_t act_min, int32_t act_max,
                              const tk_requant *q, int32_t batch,
                              int32_t in_features, const int8_t *input,
                              int32_t out_features, const int8_t *weights,
                              const int32_t *bias, int8_t *output) {
  int32_t b, o, i;
  if (input == 0 || weights == 0 || bias == 0 || output == 0 || batch < 1 ||
      in_features < 1 || out_features < 1 ||
      !tk__int8_range_ok(act_min, act_max) || input_zp < -128 ||
      input_zp > 127 || output_zp < -128 || output_zp > 127 ||
      !tk__requant_ok(q, out_features))
    return TK_ERR_ARG;
  for (b = 0; b < batch; ++b) {
    const int8_t *x = input + (int64_t)b * in_features;
    for (o = 0; o < out_features; ++o) {
      const int8_t *w = weights + (int64_t)o * in_features;
      int32_t acc = bias[o];
      for (i = 0; i < in_features; ++i) acc += ((int32_t)x[i] - input_zp) * w[i];
      acc = tk_requantize(acc, q->multiplier[o], q->shift[o]) + output_zp;
      output[(int64_t)b * out_features + o] = tk_clamp_s8(acc, act_min, act_max);
    }
  }
  return TK_OK;
}
