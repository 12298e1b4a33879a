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
      int32_t t;
      tk__im2col(p, in, x, filter, out, pix, count, scratch);
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
