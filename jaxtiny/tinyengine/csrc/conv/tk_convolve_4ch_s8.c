/* General int8 convolution, optimised: the same tiled im2col as
 * tk_convolve_s8, then columns are taken in pairs through the four-channel,
 * two-pixel dot-product core and each block of 64 outputs is requantized
 * branch-free. Same signature, scratch rule and bit-exact results as
 * tk_convolve_s8 (its buffer-size companion applies). */
#include "tk_internal.h"

int32_t tk_convolve_4ch_s8(const tk_conv_params *p, const tk_requant *q,
                           const tk_dims *in, const int8_t *input,
                           const tk_dims *filter, const int8_t *filter_data,
                           const int32_t *bias, const tk_dims *out,
                           int8_t *output, int16_t *scratch,
                           int32_t scratch_bytes) {
  int32_t kh, kw, cin, cout, col_len, tile, b, pix, npix;
  if (p == 0 || input == 0 || filter_data == 0 || bias == 0 || output == 0 ||
      scratch == 0 || !tk__dims_ok(in) || !tk__dims_ok(filter) ||
      !tk__dims_ok(out))
    return TK_ERR_ARG;
  cout = filter->n;
  kh = filter->h;
  kw = filter->w;
  cin = filter->c;
  if (cin != in->c || cout != out->c || !tk__window_ok(p, in, kh, kw, out) ||
      !tk__requant_ok(q, cout))
    return TK_ERR_ARG;
  col_len = kh * kw * cin;
  tile = scratch_bytes / (int32_t)(sizeof(int16_t) * col_len);
  if (tile < 1) return TK_ERR_SCRATCH;
  npix = out->h * out->w;
  for (b = 0; b < in->n; ++b) {
    const int8_t *x = input + (int64_t)b * in->h * in->w * cin;
    int8_t *y = output + (int64_t)b * npix * cout;
    for (pix = 0; pix < npix; pix += tile) {
      const int32_t count = npix - pix < tile ? npix - pix : tile;
      int32_t t;
      for (t = 0; t < count; ++t) {
        const int32_t oy = (pix + t) / out->w, ox = (pix + t) % out->w;
        int16_t *col = scratch + (int64_t)t * col_len;
        int32_t i, j, c;
        for (i = 0; i < kh; ++i) {
          const int32_t iy = oy * p->stride - p->pad_top + i;
          for (j = 0; j < kw; ++j) {
            const int32_t ix = ox * p->stride - p->pad_left + j;
            int16_t *dst = col + (i * kw + j) * cin;
            if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w) {
              for (c = 0; c < cin; ++c) dst[c] = 0;
            } else {
              const int8_t *src = x + ((int64_t)iy * in->w + ix) * cin;
              for (c = 0; c < cin; ++c)
                dst[c] = (int16_t)(src[c] - p->input_zp);
            }
          }
        }
      }
      for (t = 0; t < count; t += 2) {
        const int32_t u = t + 1 < count ? t + 1 : t;
        int32_t o0;
        for (o0 = 0; o0 < cout; o0 += TK_DOT_BLOCK) {
          const int32_t n = cout - o0 < TK_DOT_BLOCK ? cout - o0 : TK_DOT_BLOCK;
          int32_t acc0[TK_DOT_BLOCK], acc1[TK_DOT_BLOCK];
          tk__dot_block_2px(scratch + (int64_t)t * col_len,
                            scratch + (int64_t)u * col_len, col_len,
                            filter_data, bias, o0, n, acc0, acc1);
          tk_requantize_block(acc0, n, q->multiplier + o0, q->shift + o0,
                              p->output_zp, p->act_min, p->act_max,
                              y + (int64_t)(pix + t) * cout + o0);
          if (u != t)
            tk_requantize_block(acc1, n, q->multiplier + o0, q->shift + o0,
                                p->output_zp, p->act_min, p->act_max,
                                y + (int64_t)(pix + u) * cout + o0);
        }
      }
    }
  }
  return TK_OK;
}
