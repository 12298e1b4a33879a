/* Standalone test driver: reads test vectors written by the Python integer
 * reference (jaxtiny.tinyengine.vectors) and checks every kernel variant
 * against the expected output. Built with -fsanitize=address,undefined by
 * the test suite, so sanitizer reports surface without loading the sanitizer
 * runtime into Python. Exit status: 0 all equal, 1 mismatch, 2 bad file.
 * (The driver itself may allocate; the kernels never do.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tk.h"

enum { K_CONV = 1, K_DW = 2, K_FC = 3, K_AVGPOOL = 4, K_ADD = 5 };

static FILE *f;
static int failures;

static int read_i32(int32_t *v, size_t n) {
  return fread(v, sizeof(int32_t), n, f) == n;
}

static void *read_block(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (p == NULL || fread(p, 1, bytes, f) != bytes) {
    fprintf(stderr, "truncated vector file\n");
    exit(2);
  }
  return p;
}

static void compare(const char *what, int index, const int8_t *got,
                    const int8_t *want, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) {
    if (got[i] != want[i]) {
      fprintf(stderr, "case %d %s: element %zu is %d, expected %d\n", index,
              what, i, got[i], want[i]);
      ++failures;
      return;
    }
  }
}

static void check_status(const char *what, int index, int32_t status) {
  if (status != TK_OK) {
    fprintf(stderr, "case %d %s: status %d\n", index, what, (int)status);
    ++failures;
  }
}

static void conv_case(int index) {
  int32_t h[16];
  tk_dims in, filt, out;
  tk_conv_params p;
  tk_requant q;
  int8_t *x, *w, *want, *y;
  int32_t *bias, *mult, *shift;
  size_t nin, nw, nout;
  int tile;
  if (!read_i32(h, 16)) exit(2);
  in.n = h[0]; in.h = h[1]; in.w = h[2]; in.c = h[3];
  filt.n = h[4]; filt.h = h[5]; filt.w = h[6]; filt.c = h[3];
  p.stride = h[7]; p.pad_top = h[8]; p.pad_left = h[9];
  out.n = h[0]; out.h = h[10]; out.w = h[11]; out.c = h[4];
  p.input_zp = h[12]; p.output_zp = h[13]; p.act_min = h[14]; p.act_max = h[15];
  nin = (size_t)in.n * in.h * in.w * in.c;
  nw = (size_t)filt.n * filt.h * filt.w * filt.c;
  nout = (size_t)out.n * out.h * out.w * out.c;
  x = read_block(nin);
  w = read_block(nw);
  bias = read_block(4 * (size_t)filt.n);
  mult = read_block(4 * (size_t)filt.n);
  shift = read_block(4 * (size_t)filt.n);
  want = read_block(nout);
  q.multiplier = mult;
  q.shift = shift;
  y = malloc(nout);
  for (tile = 1; tile <= 3; ++tile) {
    int32_t bytes = tk_convolve_s8_get_buffer_size(&filt, tile);
    int16_t *scratch = malloc((size_t)bytes);
    memset(y, 0, nout);
    check_status("conv", index, tk_convolve_s8(&p, &q, &in, x, &filt, w, bias,
                                               &out, y, scratch, bytes));
    compare("conv", index, y, want, nout);
    memset(y, 0, nout);
    check_status("conv_4ch", index, tk_convolve_4ch_s8(
        &p, &q, &in, x, &filt, w, bias, &out, y, scratch, bytes));
    compare("conv_4ch", index, y, want, nout);
    free(scratch);
  }
  if (filt.h == 1 && filt.w == 1 && p.stride == 1 && p.pad_top == 0 &&
      p.pad_left == 0 && out.h == in.h && out.w == in.w) {
    memset(y, 0, nout);
    check_status("conv1x1", index,
                 tk_convolve_1x1_s8(&p, &q, &in, x, &filt, w, bias, &out, y));
    compare("conv1x1", index, y, want, nout);
    memset(y, 0, nout);
    check_status("conv1x1_4ch", index, tk_convolve_1x1_4ch_s8(
        &p, &q, &in, x, &filt, w, bias, &out, y));
    compare("conv1x1_4ch", index, y, want, nout);
  }
  free(x); free(w); free(bias); free(mult); free(shift); free(want); free(y);
}

static void dw_case(int index) {
  int32_t h[16];
  tk_dims in, filt, out;
  tk_conv_params p;
  tk_requant q;
  int8_t *x, *w, *want, *y, *buf, *scratch;
  int32_t *bias, *mult, *shift, bytes;
  size_t nin, nw, nout;
  if (!read_i32(h, 16)) exit(2);
  in.n = h[0]; in.h = h[1]; in.w = h[2]; in.c = h[3];
  filt.n = 1; filt.h = h[5]; filt.w = h[6]; filt.c = h[3];
  p.stride = h[7]; p.pad_top = h[8]; p.pad_left = h[9];
  out.n = h[0]; out.h = h[10]; out.w = h[11]; out.c = h[3];
  p.input_zp = h[12]; p.output_zp = h[13]; p.act_min = h[14]; p.act_max = h[15];
  nin = (size_t)in.n * in.h * in.w * in.c;
  nw = (size_t)filt.h * filt.w * filt.c;
  nout = (size_t)out.n * out.h * out.w * out.c;
  x = read_block(nin);
  w = read_block(nw);
  bias = read_block(4 * (size_t)in.c);
  mult = read_block(4 * (size_t)in.c);
  shift = read_block(4 * (size_t)in.c);
  want = read_block(nout);
  q.multiplier = mult;
  q.shift = shift;
  y = malloc(nout);
  memset(y, 0, nout);
  check_status("dw", index,
               tk_depthwise_conv_s8(&p, &q, &in, x, &filt, w, bias, &out, y));
  compare("dw", index, y, want, nout);
  memset(y, 0, nout);
  check_status("dw_unrolled", index, tk_depthwise_conv_unrolled_s8(
      &p, &q, &in, x, &filt, w, bias, &out, y));
  compare("dw_unrolled", index, y, want, nout);
  if (nout <= nin) {
    buf = malloc(nin);
    memcpy(buf, x, nin);
    bytes = tk_depthwise_conv_inplace_s8_get_buffer_size(&p, &in, &filt, &out);
    scratch = malloc((size_t)bytes);
    check_status("dw_inplace", index, tk_depthwise_conv_inplace_s8(
        &p, &q, &in, buf, &filt, w, bias, &out, scratch, bytes));
    compare("dw_inplace", index, buf, want, nout);
    free(buf);
    free(scratch);
  }
  free(x); free(w); free(bias); free(mult); free(shift); free(want); free(y);
}

static void fc_case(int index) {
  int32_t h[7];
  tk_requant q;
  int8_t *x, *w, *want, *y;
  int32_t *bias, *mult, *shift;
  if (!read_i32(h, 7)) exit(2);
  x = read_block((size_t)h[0] * h[1]);
  w = read_block((size_t)h[2] * h[1]);
  bias = read_block(4 * (size_t)h[2]);
  mult = read_block(4 * (size_t)h[2]);
  shift = read_block(4 * (size_t)h[2]);
  want = read_block((size_t)h[0] * h[2]);
  q.multiplier = mult;
  q.shift = shift;
  y = malloc((size_t)h[0] * h[2]);
  check_status("fc", index, tk_fully_connected_s8(h[3], h[4], h[5], h[6], &q,
                                                  h[0], h[1], x, h[2], w, bias,
                                                  y));
  compare("fc", index, y, want, (size_t)h[0] * h[2]);
  free(x); free(w); free(bias); free(mult); free(shift); free(want); free(y);
}

static void avgpool_case(int index) {
  int32_t h[6];
  tk_dims in;
  int8_t *x, *want, *y;
  if (!read_i32(h, 6)) exit(2);
  in.n = h[0]; in.h = h[1]; in.w = h[2]; in.c = h[3];
  x = read_block((size_t)in.n * in.h * in.w * in.c);
  want = read_block((size_t)in.n * in.c);
  y = malloc((size_t)in.n * in.c);
  check_status("avgpool", index, tk_avgpool_s8(&in, x, h[4], h[5], y));
  compare("avgpool", index, y, want, (size_t)in.n * in.c);
  free(x); free(want); free(y);
}

static void add_case(int index) {
  int32_t h[12];
  tk_add_params p;
  int8_t *a, *b, *want, *y;
  if (!read_i32(h, 12)) exit(2);
  p.a_zp = h[1]; p.b_zp = h[2]; p.output_zp = h[3];
  p.a_multiplier = h[4]; p.a_shift = h[5];
  p.b_multiplier = h[6]; p.b_shift = h[7];
  p.output_multiplier = h[8]; p.output_shift = h[9];
  p.act_min = h[10]; p.act_max = h[11];
  a = read_block((size_t)h[0]);
  b = read_block((size_t)h[0]);
  want = read_block((size_t)h[0]);
  y = malloc((size_t)h[0]);
  check_status("add", index, tk_add_s8(&p, h[0], a, b, y));
  compare("add", index, y, want, (size_t)h[0]);
  free(a); free(b); free(want); free(y);
}

int main(int argc, char **argv) {
  int32_t kind;
  int index = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: %s VECTORS.bin\n", argv[0]);
    return 2;
  }
  f = fopen(argv[1], "rb");
  if (f == NULL) {
    fprintf(stderr, "cannot open %s\n", argv[1]);
    return 2;
  }
  while (fread(&kind, sizeof kind, 1, f) == 1) {
    switch (kind) {
      case K_CONV: conv_case(index); break;
      case K_DW: dw_case(index); break;
      case K_FC: fc_case(index); break;
      case K_AVGPOOL: avgpool_case(index); break;
      case K_ADD: add_case(index); break;
      default:
        fprintf(stderr, "unknown record kind %d\n", (int)kind);
        return 2;
    }
    ++index;
  }
  fclose(f);
  printf("%d cases, %d failures\n", index, failures);
  return failures ? 1 : 0;
}
