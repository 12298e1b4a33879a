"""Model-adaptive C code generation: one quantized network -> `model.h` and
`model.c`, with the memory plan baked in.

  files = generate(arch, qgraph)              # {"model.h": ..., "model.c": ...}
  write_files(files, out_dir)                 # atomically
  python -m jaxtiny.tinyengine.generate --weights=W.npz --out=DIR \
      [--arch=A.json] [--calib=1000] [--budget-kb=N]

What the generated program is:
  - every weight, folded bias, Q31 multiplier and shift as a `const` array
    (Flash); biases of the depthwise and pointwise convolutions have the
    input zero point folded in (bias - zp_in * sum(w)), so their inner loops
    multiply raw int8 values;
  - one static arena of exactly the planned size (`schedule.plan_memory`,
    "tinyengine" strategy): the input is written into it (see
    `model_input_buffer`), every tensor lives at its planned offset,
    depthwise convolutions and residual adds run in place;
  - `model_invoke(input, output)`: the op sequence as straight-line calls
    with every offset, shape and quantization constant written out (no
    interpreter, no op table, no dispatch at run time);
  - kernels specialised for the network: a direct convolution per (kernel
    size, stride, input channels) and a depthwise convolution per (kernel
    size, stride) pair the network uses,
    the depthwise with its k*k taps fully unrolled for windows inside the
    input, and two pointwise convolutions (one for expansions, one for
    projections, chosen per layer), and a residual add with branch-free
    requantization; the pooling and classifier come from the kernel library
    (`tk.h`).
  - with `-DMODEL_POISON`, every arena byte that holds no live tensor is
    overwritten before each op, so a tensor whose planned lifetime or place
    is wrong corrupts the result instead of passing by luck; with
    `-DMODEL_TRACE`, a `model_trace(op, arena)` hook the caller defines sees
    the arena after every op (`host.build(..., trace=True)` compares every
    tensor with the integer reference).

Generated files are plain C99 plus one GCC attribute (arena alignment), with
no libc calls, so the same code compiles for the host and for a Cortex-M.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Sequence

import numpy as np

from jaxtiny import fileio
from jaxtiny.tinyengine import schedule
from jaxtiny.tinynas import arch as arch_lib

CONV, DEPTHWISE, FC, AVGPOOL, ADD = (schedule.CONV, schedule.DEPTHWISE,
                                     schedule.FC, schedule.AVGPOOL,
                                     schedule.ADD)
MAX_KERNEL = 11
MAX_STRIDE = 4


class GenerateError(ValueError):
  """A network the generator cannot emit code for (before any file is
  written)."""


# --------------------------------------------------------------- validation

def _expect(cond: bool, msg: str) -> None:
  if not cond:
    raise GenerateError(msg)


def check_graph(specs: Sequence[schedule.OpSpec], g) -> None:
  """Raises GenerateError unless the quantized graph `g` (a `graph.QGraph`)
  is the op sequence `specs` with weights of matching shapes."""
  _expect(len(g.ops) == len(specs),
          f"the weights do not match the architecture: {len(g.ops)} ops in "
          f"the quantized graph, {len(specs)} in the architecture.")
  _expect(tuple(g.input_shape) == specs[0].in_shape,
          f"the weights do not match the architecture: input "
          f"{tuple(g.input_shape)} vs {specs[0].in_shape}.")
  for i, (op, s) in enumerate(zip(g.ops, specs)):
    where = f"op {i} ({s.kind} -> {s.output})"
    _expect(op.kind == s.kind and op.output == s.output and
            tuple(op.inputs) == s.inputs,
            f"the weights do not match the architecture at {where}: the "
            f"quantized graph has {op.kind} {tuple(op.inputs)} -> {op.output}.")
    a = op.args
    if s.kind == CONV:
      want = (s.out_shape[2], s.kernel, s.kernel, s.in_shape[2])
    elif s.kind == DEPTHWISE:
      want = (s.kernel, s.kernel, s.in_shape[2])
    elif s.kind == FC:
      want = (s.out_shape[2], s.in_shape[2])
    else:
      want = None
    if want is not None:
      w = a["w"]
      _expect(tuple(w.shape) == want and w.dtype == np.int8,
              f"the weights do not match the architecture at {where}: "
              f"weights {w.dtype} {tuple(w.shape)}, expected int8 {want}.")
      for key in ("bias", "m0", "shift"):
        _expect(len(a[key]) == want[0] if s.kind != DEPTHWISE
                else len(a[key]) == want[2],
                f"the weights do not match the architecture at {where}: "
                f"{key} has {len(a[key])} entries.")
      if s.kind != FC:
        _expect(tuple(a["pad"]) == s.pad and a["stride"] == s.stride,
                f"the weights do not match the architecture at {where}: "
                f"stride {a['stride']} / pad {a['pad']} vs {s.stride} / "
                f"{s.pad}.")


def check_supported(specs: Sequence[schedule.OpSpec]) -> None:
  """Raises GenerateError for ops or shapes the kernels do not cover."""
  for i, s in enumerate(specs):
    where = f"op {i} ({s.kind} -> {s.output})"
    _expect(s.kind in (CONV, DEPTHWISE, FC, AVGPOOL, ADD),
            f"unsupported op {where}.")
    if s.kind in (CONV, DEPTHWISE):
      _expect(s.kernel % 2 == 1 and 1 <= s.kernel <= MAX_KERNEL,
              f"unsupported {where}: kernel {s.kernel} (odd sizes 1..."
              f"{MAX_KERNEL} only).")
      _expect(1 <= s.stride <= MAX_STRIDE,
              f"unsupported {where}: stride {s.stride} (1..{MAX_STRIDE}).")
      _expect(s.pad == (s.kernel // 2,) * 4,
              f"unsupported {where}: padding {s.pad} (only 'same').")
    _expect(min(s.in_shape + s.out_shape) >= 1,
            f"unsupported {where}: empty tensor {s.in_shape} -> "
            f"{s.out_shape}.")
    _expect(nbytes_ok(s), f"unsupported {where}: a tensor of more than "
            "2^31 - 1 bytes.")


def nbytes_ok(s: schedule.OpSpec) -> bool:
  return max(schedule.nbytes(s.in_shape), schedule.nbytes(s.out_shape)) < 2**31


# ------------------------------------------------------------------ C text

def _c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 24
             ) -> str:
  v = np.asarray(values).reshape(-1)
  items = [str(int(x)) for x in v]
  lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items),
                                                            per_line)]
  body = ",\n  ".join(lines)
  return f"static const {ctype} {name}[{len(items)}] = {{\n  {body}\n}};\n"


def _direct_conv_kernel(k: int, s: int, cin: int) -> str:
  t = k * k * cin
  return f"""
/* Direct convolution, {k}x{k} stride {s}, {cin} input channels, 'same'
 * padding, no im2col buffer: each output pixel gathers its centred window
 * ({t} int16 values on the stack, zero where the window is padding) and
 * accumulates it against weights stored [{t}][cout], the inner loop running
 * over contiguous output channels; outputs requantized as a block. */
static void conv_k{k}s{s}c{cin}(const int8_t *x, int8_t *y, int32_t h,
                             int32_t w, int32_t ho, int32_t wo, int32_t cout,
                             const int8_t *wt, const int32_t *bias,
                             const int32_t *mult, const int32_t *shift,
                             int32_t zp_in, int32_t zp_out, int32_t lo,
                             int32_t hi) {{
  int16_t patch[{t}];
  int32_t oy, ox, o, o0, i, j, c, t;
  for (oy = 0; oy < ho; ++oy) {{
    for (ox = 0; ox < wo; ++ox) {{
      const int32_t iy0 = oy * {s} - {k // 2}, ix0 = ox * {s} - {k // 2};
      int8_t *dst = y + (oy * wo + ox) * cout;
      /* Zero the window, then copy its rows and columns inside the input.
       * (A per-tap if/else gather here was miscompiled by GCC 12.2 at -O3
       * when input and output live in one array; see BUILD_NOTES.md.) */
      const int32_t i_lo = iy0 < 0 ? -iy0 : 0, j_lo = ix0 < 0 ? -ix0 : 0;
      const int32_t i_hi = iy0 + {k} > h ? h - iy0 : {k};
      const int32_t j_hi = ix0 + {k} > w ? w - ix0 : {k};
      for (t = 0; t < {t}; ++t) patch[t] = 0;
      for (i = i_lo; i < i_hi; ++i) {{
        for (j = j_lo; j < j_hi; ++j) {{
          const int8_t *px = x + ((iy0 + i) * w + ix0 + j) * {cin};
          int16_t *pp = patch + (i * {k} + j) * {cin};
          for (c = 0; c < {cin}; ++c) pp[c] = (int16_t)(px[c] - zp_in);
        }}
      }}
      for (o0 = 0; o0 < cout; o0 += ROW_BLOCK) {{
        const int32_t n = cout - o0 < ROW_BLOCK ? cout - o0 : ROW_BLOCK;
        int32_t acc[ROW_BLOCK];
        for (o = 0; o < n; ++o) acc[o] = bias[o0 + o];
        for (t = 0; t < {t}; ++t) {{
          const int32_t v = patch[t];
          const int8_t *wr = wt + t * cout + o0;
          for (o = 0; o < n; ++o) acc[o] += v * wr[o];
        }}
        tk_requantize_block(acc, n, mult + o0, shift + o0, zp_out, lo, hi,
                            dst + o0);
      }}
    }}
  }}
}}
"""


ADD_KERNEL = """
/* Residual add (TFLite int8 ADD, as tk_add_s8) with the branch-free
 * requantization, so the loop vectorises; in place when y == a. */
static void add_s8(const int8_t *a, const int8_t *b, int8_t *y, int32_t n,
                   int32_t za, int32_t zb, int32_t zo, int32_t ma, int32_t sa,
                   int32_t mb, int32_t sb, int32_t mo, int32_t so, int32_t lo,
                   int32_t hi) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    const int32_t va =
        tk_requantize_bf(((int32_t)a[i] - za) * (1 << TK_ADD_LEFT_SHIFT), ma, sa);
    const int32_t vb =
        tk_requantize_bf(((int32_t)b[i] - zb) * (1 << TK_ADD_LEFT_SHIFT), mb, sb);
    int32_t v = tk_requantize_bf(va + vb, mo, so) + zo;
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    y[i] = (int8_t)v;
  }
}
"""


POINTWISE_BLOCK = 64
POINTWISE_KERNELS = """
/* Pointwise (1x1) convolutions on raw int8 inputs: the input zero point is
 * folded into the bias. Two pixels per pass share every loaded weight;
 * accumulators in blocks of PW_BLOCK output channels. Which of the two runs
 * is fixed per layer at generation time (schedule.pointwise_columns):
 *   pointwise_wide  cin <= cout (expansions): weights [cin][cout], the inner
 *                   loop runs over contiguous output channels;
 *   pointwise_deep  cin > cout (projections): weights [cout][cin], the two
 *                   pixels widened once to int16 columns in `cols` (4 * cin
 *                   bytes of planned scratch), then the library's dot-product
 *                   block (tk__dot_block_2px: four output channels per pass
 *                   over cin). */
#define PW_BLOCK %d
static void pointwise_wide(const int8_t *x, int8_t *y, int32_t npix,
                           int32_t cin, int32_t cout, const int8_t *wt,
                           const int32_t *bias, const int32_t *mult,
                           const int32_t *shift, int32_t zp_out, int32_t lo,
                           int32_t hi) {
  int32_t p, o0, k, o;
  for (p = 0; p < npix; p += 2) {
    const int32_t two = p + 1 < npix;
    const int8_t *x0 = x + p * cin, *x1 = two ? x0 + cin : x0;
    for (o0 = 0; o0 < cout; o0 += PW_BLOCK) {
      const int32_t n = cout - o0 < PW_BLOCK ? cout - o0 : PW_BLOCK;
      int32_t a0[PW_BLOCK], a1[PW_BLOCK];
      for (o = 0; o < n; ++o) a0[o] = a1[o] = bias[o0 + o];
      for (k = 0; k < cin; ++k) {
        const int32_t u = x0[k], v = x1[k];
        const int8_t *w = wt + k * cout + o0;
        for (o = 0; o < n; ++o) {
          a0[o] += u * w[o];
          a1[o] += v * w[o];
        }
      }
      tk_requantize_block(a0, n, mult + o0, shift + o0, zp_out, lo, hi,
                          y + p * cout + o0);
      if (two)
        tk_requantize_block(a1, n, mult + o0, shift + o0, zp_out, lo, hi,
                            y + (p + 1) * cout + o0);
    }
  }
}

static void pointwise_deep(const int8_t *x, int8_t *y, int32_t npix,
                           int32_t cin, int32_t cout, const int8_t *wt,
                           const int32_t *bias, const int32_t *mult,
                           const int32_t *shift, int32_t zp_out, int32_t lo,
                           int32_t hi, int8_t *cols) {
  int16_t *c0 = (int16_t *)(void *)cols, *c1 = c0 + cin;
  int32_t p, o0, k;
  for (p = 0; p < npix; p += 2) {
    const int32_t two = p + 1 < npix;
    const int8_t *x0 = x + p * cin, *x1 = two ? x0 + cin : x0;
    for (k = 0; k < cin; ++k) {
      c0[k] = x0[k];
      c1[k] = x1[k];
    }
    for (o0 = 0; o0 < cout; o0 += PW_BLOCK) {
      const int32_t n = cout - o0 < PW_BLOCK ? cout - o0 : PW_BLOCK;
      int32_t a0[PW_BLOCK], a1[PW_BLOCK];
      tk__dot_block_2px(c0, c1, cin, wt, bias, o0, n, a0, a1);
      tk_requantize_block(a0, n, mult + o0, shift + o0, zp_out, lo, hi,
                          y + p * cout + o0);
      if (two)
        tk_requantize_block(a1, n, mult + o0, shift + o0, zp_out, lo, hi,
                            y + (p + 1) * cout + o0);
    }
  }
}
""" % POINTWISE_BLOCK


ROW_BLOCK = 64
ROW_HELPERS = """
/* Requantizes n accumulators that share one multiplier and shift (one
 * channel of a depthwise row) and stores them `stride` bytes apart; a
 * uniform multiplier lets the compiler vectorise the loop. */
#define ROW_BLOCK %d
static inline void requant_row(const int32_t *acc, int32_t n, int32_t m,
                               int32_t sh, int32_t zp, int32_t lo, int32_t hi,
                               int8_t *dst, int32_t stride) {
  int8_t out[ROW_BLOCK];
  int32_t i;
  for (i = 0; i < n; ++i) {
    int32_t v = tk_requantize_bf(acc[i], m, sh) + zp;
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    out[i] = (int8_t)v;
  }
  for (i = 0; i < n; ++i) dst[i * stride] = out[i];
}
""" % ROW_BLOCK


def _depthwise_plane_kernel(k: int, s: int) -> str:
  p = k // 2
  taps = [(i, j) for i in range(k) for j in range(k)]
  loads = "\n".join(f"  const int32_t k{i}_{j} = f[{i * k + j}];"
                    for i, j in taps)
  terms = " +\n                 ".join(f"r[{i} * w + {j}] * k{i}_{j}"
                                       for i, j in taps)
  return f"""
/* One channel of a depthwise convolution, {k}x{k} stride {s}, 'same'
 * padding, from a ready h x w input plane into y[(oy * wo + ox) * c]
 * (y points at the channel). Windows inside the input use the unrolled taps
 * and the folded bias (b = bias - zp_in * sum(f)); windows that reach the
 * border skip the padding taps and add back zp_in * sum(f). Each output row
 * is requantized as a block. */
static void dwplane_k{k}s{s}(const int8_t *plane, int8_t *y, int32_t h,
                           int32_t w, int32_t c, int32_t ho, int32_t wo,
                           const int8_t *f, int32_t b, int32_t m, int32_t sh,
                           int32_t zp_in, int32_t zp_out, int32_t lo,
                           int32_t hi) {{
  /* Interior outputs: o * {s} - {p} >= 0 and o * {s} - {p} + {k - 1} < size. */
  const int32_t y_lo = {(p + s - 1) // s}, x_lo = {(p + s - 1) // s};
  const int32_t y_hi = h >= {k - p} ? (h - {k - p}) / {s} + 1 : 0;
  const int32_t x_hi = w >= {k - p} ? (w - {k - p}) / {s} + 1 : 0;
{loads}
  int32_t i, j, oy, ox, o0, wsum = 0;
  for (i = 0; i < {k * k}; ++i) wsum += f[i];
  for (oy = 0; oy < ho; ++oy) {{
    const int32_t inner_row = oy >= y_lo && oy < y_hi;
    const int32_t iy0 = oy * {s} - {p};
    for (o0 = 0; o0 < wo; o0 += ROW_BLOCK) {{
      const int32_t n = wo - o0 < ROW_BLOCK ? wo - o0 : ROW_BLOCK;
      int32_t acc[ROW_BLOCK];
      for (ox = o0; ox < o0 + n; ++ox) {{
        if (inner_row && ox >= x_lo && ox < x_hi) {{
          const int8_t *r = plane + iy0 * w + ox * {s} - {p};
          acc[ox - o0] = b + {terms};
        }} else {{
          const int32_t ix0 = ox * {s} - {p};
          int32_t a = b + zp_in * wsum;
          for (i = 0; i < {k}; ++i) {{
            if (iy0 + i < 0 || iy0 + i >= h) continue;
            for (j = 0; j < {k}; ++j) {{
              if (ix0 + j < 0 || ix0 + j >= w) continue;
              a += ((int32_t)plane[(iy0 + i) * w + ix0 + j] - zp_in) *
                   f[i * {k} + j];
            }}
          }}
          acc[ox - o0] = a;
        }}
      }}
      requant_row(acc, n, m, sh, zp_out, lo, hi, y + (oy * wo + o0) * c, c);
    }}
  }}
}}
"""


def _depthwise_kernel(k: int, s: int) -> str:
  return f"""
/* Depthwise convolution, {k}x{k} stride {s}, one channel at a time: the
 * channel is copied into `plane` (h x w bytes) first, so the op can run in
 * place: with y == x, channel c of output pixel q lands on channel c of
 * input pixel q, which is already in the plane. Weights [C][{k}*{k}]. */
static void dw_k{k}s{s}(const int8_t *x, int8_t *y, int32_t h, int32_t w,
                      int32_t c, int32_t ho, int32_t wo, const int8_t *wt,
                      const int32_t *bias, const int32_t *mult,
                      const int32_t *shift, int32_t zp_in, int32_t zp_out,
                      int32_t lo, int32_t hi, int8_t *plane) {{
  int32_t ch, i;
  for (ch = 0; ch < c; ++ch) {{
    for (i = 0; i < h * w; ++i) plane[i] = x[i * c + ch];
    dwplane_k{k}s{s}(plane, y + ch, h, w, c, ho, wo, wt + ch * {k * k},
                   bias[ch], mult[ch], shift[ch], zp_in, zp_out, lo, hi);
  }}
}}
"""


DW_BLOCK_MAX = 16


def _depthwise_block_kernel(k: int, s: int) -> str:
  p = k // 2
  taps = [(i, j) for i in range(k) for j in range(k)]
  terms = "\n".join(
      f"            a[cc] += r[{(i * 1)} * rs + {j} * cb + cc] * "
      f"wt[{i * k + j} * c + c0 + cc];" for i, j in taps)
  return f"""
/* Depthwise convolution, {k}x{k} stride {s}, 'same' padding, `cb` channels
 * at a time through `plane` (h x w x cb bytes, copied first: in place when
 * y == x, as each block's outputs land on input slots already copied).
 * Channels innermost, so the k*k unrolled taps vectorise over the block.
 * Weights [{k}*{k}][C] (the graph's layout). */
static void dwblk_k{k}s{s}(const int8_t *x, int8_t *y, int32_t h, int32_t w,
                         int32_t c, int32_t ho, int32_t wo, const int8_t *wt,
                         const int32_t *bias, const int32_t *mult,
                         const int32_t *shift, int32_t zp_in, int32_t zp_out,
                         int32_t lo, int32_t hi, int8_t *plane, int32_t cb_max) {{
  const int32_t y_lo = {(p + s - 1) // s}, x_lo = {(p + s - 1) // s};
  const int32_t y_hi = h >= {k - p} ? (h - {k - p}) / {s} + 1 : 0;
  const int32_t x_hi = w >= {k - p} ? (w - {k - p}) / {s} + 1 : 0;
  int32_t c0, cc, i, j, oy, ox, q;
  for (c0 = 0; c0 < c; c0 += cb_max) {{
    const int32_t cb = c - c0 < cb_max ? c - c0 : cb_max;
    const int32_t rs = w * cb;                      /* plane row stride */
    int32_t wsum[{DW_BLOCK_MAX}];
    for (cc = 0; cc < cb; ++cc) {{
      wsum[cc] = 0;
      for (q = 0; q < {k * k}; ++q) wsum[cc] += wt[q * c + c0 + cc];
    }}
    for (q = 0; q < h * w; ++q)
      for (cc = 0; cc < cb; ++cc) plane[q * cb + cc] = x[q * c + c0 + cc];
    for (oy = 0; oy < ho; ++oy) {{
      const int32_t inner_row = oy >= y_lo && oy < y_hi;
      const int32_t iy0 = oy * {s} - {p};
      for (ox = 0; ox < wo; ++ox) {{
        const int32_t ix0 = ox * {s} - {p};
        int32_t a[{DW_BLOCK_MAX}];
        if (inner_row && ox >= x_lo && ox < x_hi) {{
          const int8_t *r = plane + iy0 * rs + ix0 * cb;
          for (cc = 0; cc < cb; ++cc) a[cc] = bias[c0 + cc];
          for (cc = 0; cc < cb; ++cc) {{
{terms}
          }}
        }} else {{
          for (cc = 0; cc < cb; ++cc) a[cc] = bias[c0 + cc] + zp_in * wsum[cc];
          for (i = 0; i < {k}; ++i) {{
            if (iy0 + i < 0 || iy0 + i >= h) continue;
            for (j = 0; j < {k}; ++j) {{
              const int8_t *r;
              if (ix0 + j < 0 || ix0 + j >= w) continue;
              r = plane + (iy0 + i) * rs + (ix0 + j) * cb;
              for (cc = 0; cc < cb; ++cc)
                a[cc] += ((int32_t)r[cc] - zp_in) * wt[(i * {k} + j) * c + c0 + cc];
            }}
          }}
        }}
        tk_requantize_block(a, cb, mult + c0, shift + c0, zp_out, lo, hi,
                            y + (oy * wo + ox) * c + c0);
      }}
    }}
  }}
}}
"""


def _expand_channel_kernel(cin: int) -> str:
  terms = " + ".join(f"xp[{k}] * wrow[{k}]" for k in range(cin))
  return f"""
/* One output channel of a {cin}-input-channel pointwise expansion over all
 * pixels, into a plane (weights row [{cin}], input zero point folded into the
 * bias); the {cin}-term dot product is unrolled. */
static void expand_channel_c{cin}(const int8_t *x, int8_t *plane,
                                int32_t npix, const int8_t *wrow, int32_t b,
                                int32_t m, int32_t sh, int32_t zp, int32_t lo,
                                int32_t hi) {{
  int32_t p0, j;
  for (p0 = 0; p0 < npix; p0 += ROW_BLOCK) {{
    const int32_t n = npix - p0 < ROW_BLOCK ? npix - p0 : ROW_BLOCK;
    int32_t acc[ROW_BLOCK];
    for (j = 0; j < n; ++j) {{
      const int8_t *xp = x + (p0 + j) * {cin};
      acc[j] = b + {terms};
    }}
    requant_row(acc, n, m, sh, zp, lo, hi, plane + p0, 1);
  }}
}}
"""


def _fused_kernel(k: int, s: int, cin: int) -> str:
  return f"""
/* A pointwise expansion fused into its {k}x{k} stride-{s} depthwise: each
 * expanded channel is computed into `plane` (h x w bytes) and convolved
 * right away, so the expanded tensor never exists in the arena. Expansion
 * weights [C][cin]; depthwise weights [C][{k}*{k}]. */
static void fused_k{k}s{s}c{cin}(const int8_t *x, int8_t *y, int32_t h, int32_t w,
                         int32_t cin, int32_t c, int32_t ho, int32_t wo,
                         const int8_t *ew, const int32_t *eb,
                         const int32_t *em, const int32_t *es, int32_t ezp,
                         int32_t elo, int32_t ehi, const int8_t *wt,
                         const int32_t *bias, const int32_t *mult,
                         const int32_t *shift, int32_t zp_out, int32_t lo,
                         int32_t hi, int8_t *plane) {{
  int32_t ch;
  (void)cin;                          /* {cin}: baked into the name */
  for (ch = 0; ch < c; ++ch) {{
    expand_channel_c{cin}(x, plane, h * w, ew + ch * {cin}, eb[ch], em[ch],
                       es[ch], ezp, elo, ehi);
    dwplane_k{k}s{s}(plane, y + ch, h, w, c, ho, wo, wt + ch * {k * k},
                   bias[ch], mult[ch], shift[ch], ezp, zp_out, lo, hi);
  }}
}}
"""


@dataclasses.dataclass(frozen=True)
class Generated:
  """The generated sources and what they were planned with."""
  files: dict[str, str]
  plan: schedule.Plan
  flash_data_bytes: int         # const arrays: weights + per-channel params


def _fold_zero_point(w_rows: np.ndarray, bias: np.ndarray, zp_in: int
                     ) -> np.ndarray:
  """bias - zp_in * sum(w) per output channel, int32 (checked)."""
  folded = (bias.astype(np.int64) -
            int(zp_in) * w_rows.astype(np.int64).sum(axis=1))
  if folded.min() < -2**31 or folded.max() >= 2**31:
    raise GenerateError("a folded bias overflows int32.")
  return folded.astype(np.int32)


def _poison_table(plan: schedule.Plan) -> tuple[list[int], list[int], list[int]]:
  """Per op, the merged arena ranges the plan holds live before it runs:
  every buffer segment written by an earlier op and read by this op or a
  later one. The table follows the plan's own lifetimes, so a lifetime the
  planner got wrong poisons bytes the program still reads."""
  starts, lens, first = [], [], [0]
  for i in range(len(plan.specs) + 1):
    ranges = sorted(
        (plan.buffer_offsets[b.name], plan.buffer_offsets[b.name] + seg.nbytes)
        for b in plan.buffers if b.tensors
        for seg in b.segments if seg.start < i <= seg.end)
    merged: list[list[int]] = []
    for lo, hi in ranges:
      if merged and lo <= merged[-1][1]:
        merged[-1][1] = max(merged[-1][1], hi)
      else:
        merged.append([lo, hi])
    for lo, hi in merged:
      starts.append(lo)
      lens.append(hi - lo)
    first.append(len(starts))
  return starts, lens, first


def generate(arch: arch_lib.Arch, g, plan: schedule.Plan | None = None,
             budget_bytes: int | None = None, name: str = "model",
             verify_plan: bool = True) -> Generated:
  """C sources for the quantized graph `g` of `arch` (see module doc).

  Raises GenerateError / schedule.PlanError before producing anything when
  the graph does not match the architecture, an op is unsupported, or the
  plan misses `budget_bytes`.
  """
  specs = schedule.op_specs(arch)
  check_supported(specs)
  check_graph(specs, g)
  if plan is None:
    plan = schedule.plan_memory(specs, budget_bytes=budget_bytes)
  elif budget_bytes is not None:
    schedule.check_budget(plan, budget_bytes)
  if plan.strategy != "tinyengine":
    raise GenerateError("generated code runs the 'tinyengine' plan (in-place "
                        f"ops); got a {plan.strategy!r} plan.")
  if verify_plan:
    schedule.check_plan(plan)
  if plan.dw_blocks and max(plan.dw_blocks.values()) > DW_BLOCK_MAX:
    raise GenerateError(f"depthwise channel blocks above {DW_BLOCK_MAX} are "
                        "not supported.")
  guard = f"JT_{name.upper()}_H_"
  in_h, in_w, in_c = specs[0].in_shape
  n_out = specs[-1].out_shape[2]
  off = plan.offsets
  shared = plan.scratch_bytes > 0

  data: list[str] = []
  calls: list[str] = []
  kernels: dict[str, str] = {}
  flash = 0

  def scratch_ptr(i: int) -> str:
    if shared:
      return "scratch"
    return f"arena + {plan.scratch_offsets[i]}"

  for i, (op, s) in enumerate(zip(g.ops, specs)):
    a = op.args
    # (A fused expansion's output and its depthwise's input are not in the
    # arena; the branches below take their pointers from elsewhere.)
    src = f"arena + {off.get(s.inputs[0], -1)}"
    dst = f"arena + {off.get(s.output, -1)}"
    h, w, c = s.in_shape
    ho, wo, co = s.out_shape
    p = f"L{i}"
    if s.kind in (CONV, DEPTHWISE, FC):
      q = (f"{p}_m, {p}_s")
      if s.kind == DEPTHWISE:
        rows = np.ascontiguousarray(np.transpose(a["w"], (2, 0, 1))).reshape(
            c, -1)                                 # [C][k * k]
        bias = _fold_zero_point(rows, a["bias"], a["zp_in"])
        blocked = plan.dw_blocks.get(i, 1) > 1
        wt = np.ascontiguousarray(a["w"]).reshape(-1, c) if blocked else rows
      elif s.kind == CONV and s.pointwise:
        rows = a["w"].reshape(co, c)
        bias = _fold_zero_point(rows, a["bias"], a["zp_in"])
        rowwise = schedule.pointwise_columns(s) or s.output in plan.fused
        wt = rows if rowwise else np.ascontiguousarray(
            rows.T)                                # wide: [cin][cout]
      elif s.kind == CONV:                       # [k * k * cin][cout]
        wt = np.ascontiguousarray(a["w"].reshape(co, -1).T)
        bias = a["bias"].astype(np.int32)
      else:
        wt = a["w"]
        bias = a["bias"].astype(np.int32)
      data.append(f"/* op {i}: {s.kind} -> {s.output} */\n")
      data.append(_c_array("int8_t", f"{p}_w", wt))
      data.append(_c_array("int32_t", f"{p}_b", bias))
      data.append(_c_array("int32_t", f"{p}_m", a["m0"]))
      data.append(_c_array("int32_t", f"{p}_s", a["shift"]))
      flash += wt.size + 12 * len(bias)
      zo, lo, hi = a["zp_out"], a["act_min"], a["act_max"]
    if s.kind == CONV and s.output in plan.fused:
      calls.append(f"  /* {s.output}: computed one channel at a time inside "
                   f"op {i + 1} */")
    elif s.kind == CONV and s.pointwise:
      kernels.setdefault("pointwise", POINTWISE_KERNELS)
      if schedule.pointwise_columns(s):
        calls.append(f"  pointwise_deep({src}, {dst}, {h * w}, {c}, {co}, "
                     f"{p}_w, {p}_b, {q}, {zo}, {lo}, {hi}, {scratch_ptr(i)});")
      else:
        calls.append(f"  pointwise_wide({src}, {dst}, {h * w}, {c}, {co}, "
                     f"{p}_w, {p}_b, {q}, {zo}, {lo}, {hi});")
    elif s.kind == CONV:
      fn = f"conv_k{s.kernel}s{s.stride}c{c}"
      kernels.setdefault("_requant_row", ROW_HELPERS)
      kernels[fn] = _direct_conv_kernel(s.kernel, s.stride, c)
      calls.append(f"  {fn}({src}, {dst}, {h}, {w}, {ho}, {wo}, {co}, "
                   f"{p}_w, {p}_b, {q}, {a['zp_in']}, {zo}, {lo}, {hi});")
    elif s.kind == DEPTHWISE:
      kk = f"k{s.kernel}s{s.stride}"
      kernels.setdefault("_requant_row", ROW_HELPERS)
      if plan.dw_blocks.get(i, 1) == 1:
        kernels.setdefault(f"dwplane_{kk}",
                           _depthwise_plane_kernel(s.kernel, s.stride))
      if s.inputs[0] in plan.fused:
        e = g.ops[i - 1].args
        ep = f"L{i - 1}"
        eh, ew_, ec = specs[i - 1].in_shape
        kernels.setdefault(f"expand_channel_c{ec}", _expand_channel_kernel(ec))
        kernels.setdefault(f"fused_{kk}c{ec}",
                           _fused_kernel(s.kernel, s.stride, ec))
        src = f"arena + {off[specs[i - 1].inputs[0]]}"
        calls.append(
            f"  fused_{kk}c{ec}({src}, {dst}, {h}, {w}, {ec}, {c}, {ho}, {wo}, "
            f"{ep}_w, {ep}_b, {ep}_m, {ep}_s, {e['zp_out']}, {e['act_min']}, "
            f"{e['act_max']}, {p}_w, {p}_b, {q}, {zo}, {lo}, {hi}, "
            f"{scratch_ptr(i)});")
      elif plan.dw_blocks.get(i, 1) > 1:
        kernels.setdefault(f"dwblk_{kk}",
                           _depthwise_block_kernel(s.kernel, s.stride))
        calls.append(f"  dwblk_{kk}({src}, {dst}, {h}, {w}, {c}, {ho}, {wo}, "
                     f"{p}_w, {p}_b, {q}, {a['zp_in']}, {zo}, {lo}, {hi}, "
                     f"{scratch_ptr(i)}, {plan.dw_blocks[i]});")
      else:
        kernels.setdefault(f"dw_{kk}", _depthwise_kernel(s.kernel, s.stride))
        calls.append(f"  dw_{kk}({src}, {dst}, {h}, {w}, {c}, {ho}, {wo}, "
                     f"{p}_w, {p}_b, {q}, {a['zp_in']}, {zo}, {lo}, {hi}, "
                     f"{scratch_ptr(i)});")
    elif s.kind == FC:
      calls.append(f"  {{ static const tk_requant q = {{{p}_m, {p}_s}};\n"
                   f"    tk_fully_connected_s8({a['zp_in']}, {zo}, {lo}, {hi}, "
                   f"&q, 1, {c}, {src}, {co}, {p}_w, {p}_b, {dst}); }}")
    elif s.kind == AVGPOOL:
      calls.append(f"  {{ static const tk_dims d = {{1, {h}, {w}, {c}}};\n"
                   f"    tk_avgpool_s8(&d, {src}, {a['act_min']}, "
                   f"{a['act_max']}, {dst}); }}")
    elif s.kind == ADD:
      other = f"arena + {off[s.inputs[1]]}"
      kernels.setdefault("add_s8", ADD_KERNEL)
      fields = ", ".join(str(int(a[k])) for k in (
          "zp_a", "zp_b", "zp_out", "m1", "shift1", "m2", "shift2", "m_out",
          "shift_out", "act_min", "act_max"))
      calls.append(f"  add_s8({src}, {other}, {dst}, {h * w * c}, {fields});")
    calls[-1] = f"  POISON({i});\n" + calls[-1] + f"\n  TRACE({i});"

  starts, lens, first = _poison_table(plan)
  n_ops = len(specs)
  header = f"""/* Generated by jaxtiny.tinyengine.generate; do not edit.
 * Network: input {in_h}x{in_w}x{in_c}, {len(arch.blocks)} blocks, {n_out} classes.
 * Planned SRAM: arena {plan.arena_bytes} B + scratch {plan.scratch_bytes} B = {plan.peak_bytes} B.
 */
#ifndef {guard}
#define {guard}

#include <stdint.h>

#define MODEL_INPUT_H {in_h}
#define MODEL_INPUT_W {in_w}
#define MODEL_INPUT_C {in_c}
#define MODEL_INPUT_BYTES {in_h * in_w * in_c}
#define MODEL_OUTPUT_BYTES {n_out}
#define MODEL_ARENA_BYTES {plan.arena_bytes}
#define MODEL_SCRATCH_BYTES {plan.scratch_bytes}
#define MODEL_NUM_OPS {n_ops}

/* The input tensor's place in the arena: a camera or host can write the
 * image here and pass it to model_invoke, which then copies nothing. */
int8_t *model_input_buffer(void);

/* Runs the network on one int8 image [H][W][C] (the input quantization of
 * the graph) and writes the int8 logits. */
void model_invoke(const int8_t *input, int8_t *output);

#endif /* {guard} */
"""
  poison = f"""
#ifdef MODEL_POISON
/* Arena ranges alive before each op (and after the last); every other byte
 * is overwritten with a pattern that changes per op. */
static const int32_t poison_start[{max(len(starts), 1)}] = {{{", ".join(map(str, starts)) or "0"}}};
static const int32_t poison_len[{max(len(lens), 1)}] = {{{", ".join(map(str, lens)) or "0"}}};
static const int32_t poison_first[{len(first)}] = {{{", ".join(map(str, first))}}};
static void poison(int32_t op) {{
  int32_t r, i, a = 0;
  const int8_t v = (int8_t)(0x5A ^ (op * 37));
  for (r = poison_first[op]; r < poison_first[op + 1]; ++r) {{
    for (i = a; i < poison_start[r]; ++i) arena[i] = v;
    a = poison_start[r] + poison_len[r];
  }}
  for (i = a; i < MODEL_ARENA_BYTES; ++i) arena[i] = v;
#if MODEL_SCRATCH_BYTES > 0
  for (i = 0; i < MODEL_SCRATCH_BYTES; ++i) scratch[i] = v;
#endif
}}
#define POISON(op) poison(op)
#else
#define POISON(op)
#endif

#ifdef MODEL_TRACE
/* Debugging hook: called with the arena after every op. */
void model_trace(int32_t op, const int8_t *arena_bytes);
#define TRACE(op) model_trace(op, arena)
#else
#define TRACE(op)
#endif
"""
  in_off = off[schedule.INPUT]
  out_off = off[schedule.LOGITS]
  source = f"""/* Generated by jaxtiny.tinyengine.generate; do not edit. */
#include "{name}.h"
#include "tk_internal.h"

static int8_t arena[MODEL_ARENA_BYTES] __attribute__((aligned(8)));
{"static int8_t scratch[MODEL_SCRATCH_BYTES];" if shared else ""}

{"".join(data)}
{"".join(kernels.values())}
{poison}
int8_t *model_input_buffer(void) {{ return arena + {in_off}; }}

void model_invoke(const int8_t *input, int8_t *output) {{
  int32_t i;
  if (input != arena + {in_off})
    for (i = 0; i < MODEL_INPUT_BYTES; ++i) arena[{in_off} + i] = input[i];
{chr(10).join(calls)}
  POISON({n_ops});
  for (i = 0; i < MODEL_OUTPUT_BYTES; ++i) output[i] = arena[{out_off} + i];
}}
"""
  return Generated({f"{name}.h": header, f"{name}.c": source}, plan, flash)


def write_files(files: dict[str, str], out_dir: str) -> list[str]:
  """Writes every file atomically (temp file, then rename)."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for fname, text in files.items():
    path = os.path.join(out_dir, fname)
    fileio.atomic_write_bytes(path, text.encode())
    paths.append(path)
  return paths


# ---------------------------------------------------------------------- CLI

def quantized_network(weights: str, calib: int = 1000, method: str = "minmax",
                      dataset: str = "fashion_mnist", data_dir=None):
  """(arch, float ops, qgraph) of a TinyNAS weights file, calibrated on the
  first `calib` training images."""
  from jaxtiny import data  # pylint: disable=import-outside-toplevel
  x_train, _ = data.load(dataset, "train", data_dir)
  return quantize_trained(weights, x_train[:calib], method)


def quantize_trained(weights: str, calib_images: np.ndarray,
                     method: str = "minmax"):
  """(arch, float ops, qgraph) of a TinyNAS weights file, activation ranges
  calibrated on uint8 images [N, 28, 28, 1]."""
  from jaxtiny.tinyengine import evaluate  # pylint: disable=import-outside-toplevel
  from jaxtiny.tinyengine import graph  # pylint: disable=import-outside-toplevel
  arch, params, state = evaluate.load_network(weights)
  calib_x = evaluate._float_inputs(calib_images, arch.resolution)  # pylint: disable=protected-access
  ops = graph.fold(arch, params, state)
  qp = graph.calibrate(ops, calib_x, method=method)
  r = arch.resolution
  return arch, ops, graph.quantize(ops, qp, (r, r, arch.in_channels))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m jaxtiny.tinyengine.generate",
                              description=__doc__.split("\n")[0])
  p.add_argument("--weights", required=True,
                 help="weights_*.npz written by python -m experiments.mcunet")
  p.add_argument("--arch", default="",
                 help="architecture JSON; must match the weights file's")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--calib", type=int, default=1000)
  p.add_argument("--method", default="minmax", choices=["minmax", "percentile"])
  p.add_argument("--budget-kb", type=float, default=0,
                 help="fail unless the planned peak SRAM fits this many kB")
  a = p.parse_args(argv)
  if not os.path.exists(a.weights):
    print(f"error: {a.weights} does not exist", file=sys.stderr)
    return 2
  try:
    arch, _, g = quantized_network(a.weights, a.calib, a.method)
    if a.arch:
      given = arch_lib.load(a.arch)
      if given != arch:
        raise GenerateError(f"{a.arch} is not the architecture stored in "
                            f"{a.weights}; pass the matching pair or omit "
                            "--arch.")
    budget = int(a.budget_kb * 1024) if a.budget_kb else None
    gen = generate(arch, g, budget_bytes=budget)
  except (GenerateError, schedule.PlanError, arch_lib.ArchError,
          ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  paths = write_files(gen.files, a.out)
  summary = {**gen.plan.summary(), "flash_data_bytes": gen.flash_data_bytes,
             "files": paths}
  print(json.dumps(summary, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
