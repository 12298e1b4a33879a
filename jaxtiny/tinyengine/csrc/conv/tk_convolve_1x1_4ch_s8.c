/* Pointwise int8 convolution, optimised: pixels are taken in pairs, each
 * centred once into a small stack buffer; four output channels are
 * accumulated per pass for both pixels (eight independent accumulators, each
 * weight loaded once for two pixels), and every block of 64 outputs is
 * requantized branch-free. Same signature and bit-exact results as
 * tk_convolve_1x1_s8. Stack: 4 KB of centred inputs (input channels <= 1024;
 * wider layers return TK_ERR_ARG and should use tk_convolve_1x1_s8). */
#include "tk_internal.h"

#define TK_1X1_MAX_CIN 1024

int32_t tk_convolve_1x1_4ch_s8(const tk_conv_params *p, const tk_requant *q,
                               const tk_dims *in, const int8_t *input,
                               const tk_dims *filter, const int8_t *filter_data,
                               const int32_t *bias, const tk_dims *out,
                               int8_t *output) {
  int16_t xc[2 * TK_1X1_MAX_CIN];
  int64_t pix, npix;
  int32_t cin, cout;
  if (!tk__pointwise_args_ok(p, q, in, input, filter, filter_data, bias, out,
                             output) || in->c > TK_1X1_MAX_CIN)
    return TK_ERR_ARG;
  cin = in->c;
  cout = filter->n;
  npix = (int64_t)in->n * in->h * in->w;
  for (pix = 0; pix < npix; pix += 2) {
    /* An odd last pixel is paired with itself (computed twice, stored once). */
    const int64_t second = pix + 1 < npix ? pix + 1 : pix;
    const int8_t *xa = input + pix * cin;
    const int8_t *xb = input + second * cin;
    int32_t o0, c;
    for (c = 0; c < cin; ++c) {
      xc[c] = (int16_t)(xa[c] - p->input_zp);
      xc[TK_1X1_MAX_CIN + c] = (int16_t)(xb[c] - p->input_zp);
    }
    for (o0 = 0; o0 < cout; o0 += TK_DOT_BLOCK) {
      const int32_t n = cout - o0 < TK_DOT_BLOCK ? cout - o0 : TK_DOT_BLOCK;
      int32_t acc0[TK_DOT_BLOCK], acc1[TK_DOT_BLOCK];
      tk__dot_block_2px(xc, xc + TK_1X1_MAX_CIN, cin, filter_data, bias, o0, n,
                      acc0, acc1);
      tk_requantize_block(acc0, n, q->multiplier + o0, q->shift + o0,
                          p->output_zp, p->act_min, p->act_max,
                          output + pix * cout + o0);
      if (second != pix)
        tk_requantize_block(acc1, n, q->multiplier + o0, q->shift + o0,
                            p->output_zp, p->act_min, p->act_max,
                            output + second * cout + o0);
    }
  }
  return TK_OK;
}
