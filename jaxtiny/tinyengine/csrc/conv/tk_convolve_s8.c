/* General int8 convolution (any kernel size, stride and padding) by im2col
 * over tiles of output pixels; the tile length follows from the scratch the
 * caller provides, so the buffer can stay small. */
#include "tk_internal.h"

int32_t tk_convolve_s8(const tk_conv_params *p, const tk_requant *q,
                       const tk_dims *in, const int8_t *input,
                       const tk_dims *filter, const int8_t *filter_data,
                       const int32_t *bias, const tk_dims *out, int8_t *output,
                       int16_t *scratch, int32_t scratch_bytes) {
  int32_t kh, kw, cin, cout, col_len, tile, b, pix, npix;
  if (scratch == 0 || !tk__conv_args_ok(p, q, in, input, filter, filter_data,
                                        bias, out, output))
    return TK_ERR_ARG;
  cout = filter->n;
  kh = filter->h;
  kw = filter->w;
  cin = filter->c;
  col_len = kh * kw * cin;
  tile = scratch_bytes / (int32_t)(sizeof(int16_t) * col_len);
  if (tile < 1) return TK_ERR_SCRATCH;
  npix = out->h * out->w;
  for (b = 0; b < in->n; ++b) {
    const int8_t *x = input + (int64_t)b * in->h * in->w * cin;
    int8_t *y = output + (int64_t)b * npix * cout;
    for (pix = 0; pix < npix; pix += tile) {
      const int32_t count = npix - pix < tile ? npix - pix : tile;
      int32_t t, o;
      /* Fill `count` columns of (x - zp), zero where the window is padding. */
      tk__im2col(p, in, x, filter, out, pix, count, scratch);
      for (t = 0; t < count; ++t) {
        const int16_t *col = scratch + (int64_t)t * col_len;
        int8_t *dst = y + (int64_t)(pix + t) * cout;
        for (o = 0; o < cout; ++o) {
          const int8_t *w = filter_data + (int64_t)o * col_len;
          int32_t acc = bias[o], k;
          for (k = 0; k < col_len; ++k) acc += (int32_t)col[k] * w[k];
          acc = tk_requantize(acc, q->multiplier[o], q->shift[o]) + p->output_zp;
          dst[o] = tk_clamp_s8(acc, p->act_min, p->act_max);
        }
      }
    }
  }
  return TK_OK;
}

/* Scratch bytes for a tile of `tile` output pixels (at least 1). */
int32_t tk_convolve_s8_get_buffer_size(const tk_dims *filter, int32_t tile) {
  if (filter == 0 || filter->h < 1 || filter->w < 1 || filter->c < 1)
    return 0;
  if (tile < 1) tile = 1;
  return (int32_t)sizeof(int16_t) * tile * filter->h * filter->w * filter->c;
}
