"""TinyEngine C kernels: throughput in MAC/s on MCUNet layer shapes, in one run.

For each layer: a naive C loop kept here (the textbook nested loops, channel
outermost for depthwise, no hoisting), the library's plain kernel, its
optimised twin, and the numpy integer reference. Target (issue 8): the
optimised kernels at least 2x the naive C loops.

  python -m bench.tinyengine_kernels [--repeat=5]
"""

import argparse
import importlib.util
import os
import tempfile
import time

import numpy as np
from cffi import FFI

from jaxtiny.tinyengine import ckernels
from jaxtiny.tinyengine.build_ckernels import ARCH_FLAGS
from jaxtiny.tinyengine import quant
from jaxtiny.tinyengine import reference

NAIVE_C = r"""
#include <stdint.h>
static int32_t srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * b;
  int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}
static int32_t rdbpot(int32_t x, int32_t e) {
  int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
  int32_t r = x & mask, t = (mask >> 1) + (x < 0);
  return (int32_t)(((int64_t)x - r) / ((int64_t)1 << e)) + (r > t);
}
static int8_t requant(int32_t acc, int32_t m, int32_t s, int32_t zp,
                      int32_t lo, int32_t hi) {
  int32_t v = rdbpot(srdhm((int32_t)((uint32_t)acc << (s > 0 ? s : 0)), m),
                     s > 0 ? 0 : -s) + zp;
  return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}
void naive_conv(const int8_t *x, int h, int w, int cin, const int8_t *wt,
                int cout, int k, int stride, int pad, const int32_t *bias,
                const int32_t *m, const int32_t *s, int zi, int zo, int lo,
                int hi, int8_t *y, int ho, int wo) {
  for (int oy = 0; oy < ho; ++oy)
    for (int ox = 0; ox < wo; ++ox)
      for (int o = 0; o < cout; ++o) {
        int32_t acc = bias[o];
        for (int i = 0; i < k; ++i)
          for (int j = 0; j < k; ++j)
            for (int c = 0; c < cin; ++c) {
              int iy = oy * stride - pad + i, ix = ox * stride - pad + j;
              if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
              acc += (x[(iy * w + ix) * cin + c] - zi) *
                     wt[((o * k + i) * k + j) * cin + c];
            }
        y[(oy * wo + ox) * cout + o] = requant(acc, m[o], s[o], zo, lo, hi);
      }
}
void naive_dw(const int8_t *x, int h, int w, int C, const int8_t *wt, int k,
              int stride, int pad, const int32_t *bias, const int32_t *m,
              const int32_t *s, int zi, int zo, int lo, int hi, int8_t *y,
              int ho, int wo) {
  for (int c = 0; c < C; ++c)
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox) {
        int32_t acc = bias[c];
        for (int i = 0; i < k; ++i)
          for (int j = 0; j < k; ++j) {
            int iy = oy * stride - pad + i, ix = ox * stride - pad + j;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
            acc += (x[(iy * w + ix) * C + c] - zi) * wt[(i * k + j) * C + c];
          }
        y[(oy * wo + ox) * C + c] = requant(acc, m[c], s[c], zo, lo, hi);
      }
}
"""
NAIVE_CDEF = """
void naive_conv(const int8_t *x, int h, int w, int cin, const int8_t *wt,
                int cout, int k, int stride, int pad, const int32_t *bias,
                const int32_t *m, const int32_t *s, int zi, int zo, int lo,
                int hi, int8_t *y, int ho, int wo);
void naive_dw(const int8_t *x, int h, int w, int C, const int8_t *wt, int k,
              int stride, int pad, const int32_t *bias, const int32_t *m,
              const int32_t *s, int zi, int zo, int lo, int hi, int8_t *y,
              int ho, int wo);
"""

# (name, kind, H=W, Cin, Cout, k, stride): inverted-bottleneck layers of a
# 64x64-input MCUNet-style net (TinyNAS w0.3-r64 space) and mcunet-5fps.
LAYERS = [
    ("stem 3x3 s2, 64x64x1->16", "conv", 64, 1, 16, 3, 2),
    ("expand 1x1, 32x32x8->48", "conv", 32, 8, 48, 1, 1),
    ("dw 3x3 s1, 32x32x48", "dw", 32, 48, 48, 3, 1),
    ("dw 5x5 s2, 32x32x48", "dw", 32, 48, 48, 5, 2),
    ("dw 7x7 s1, 16x16x48", "dw", 16, 48, 48, 7, 1),
    ("project 1x1, 16x16x96->16", "conv", 16, 96, 16, 1, 1),
    ("expand 1x1, 8x8x24->144", "conv", 8, 24, 144, 1, 1),
    ("dw 7x7 s2, 8x8x144", "dw", 8, 144, 144, 7, 2),
]


def _naive_lib():
  ffi = FFI()
  ffi.cdef(NAIVE_CDEF)
  # Same optimisation flags as the library build.
  ffi.set_source("_tk_naive_bench", NAIVE_C,
                 extra_compile_args=["-O3", "-std=c99", *ARCH_FLAGS])
  tmp = tempfile.mkdtemp(prefix="tk_naive_")
  path = ffi.compile(tmpdir=tmp, verbose=False)
  spec = importlib.util.spec_from_file_location("_tk_naive_bench", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.lib, mod.ffi


def _best(fn, repeat):
  fn()
  times = []
  for _ in range(repeat):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return min(times)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--repeat", type=int, default=5)
  a = p.parse_args()
  lib, ffi = _naive_lib()
  rng = np.random.default_rng(0)
  print(f"host: {os.cpu_count()} CPUs; best of {a.repeat}; MMAC/s "
        "(higher is better)")
  print("| layer | MMACs | naive C | plain | optimised | numpy ref | opt / naive |")
  print("|---|---|---|---|---|---|---|")
  ratios = []
  for name, kind, hw, cin, cout, k, s in LAYERS:
    pad = k // 2
    x = rng.integers(-128, 128, (1, hw, hw, cin), dtype=np.int8)
    c = cout if kind == "conv" else cin
    m0, sh = quant.quantize_multipliers(rng.uniform(1e-4, 1e-2, c))
    bias = rng.integers(-1000, 1000, c).astype(np.int32)
    ho = reference.out_size(hw, k, s, pad, pad)
    if kind == "conv":
      w = rng.integers(-127, 128, (cout, k, k, cin), dtype=np.int8)
      macs = ho * ho * cout * k * k * cin
      args = (x, w, bias, 3, -2, m0, sh, s, (pad,) * 4, -128, 127)
      plain = lambda: ckernels.conv(*args, variant="plain", tile=16)
      opt = lambda: ckernels.conv(*args, variant="4ch", tile=16)
      ref = lambda: reference.conv(*args)
      naive_fn, naive_args = lib.naive_conv, (cout,)
    else:
      w = rng.integers(-127, 128, (k, k, cin), dtype=np.int8)
      macs = ho * ho * cin * k * k
      args = (x, w, bias, 3, -2, m0, sh, s, (pad,) * 4, -128, 127)
      plain = lambda: ckernels.depthwise_conv(*args, variant="plain")
      opt = lambda: ckernels.depthwise_conv(*args, variant="unrolled")
      ref = lambda: reference.depthwise_conv(*args)
      naive_fn, naive_args = lib.naive_dw, ()
    y = np.empty((1, ho, ho, c), np.int8)
    i8 = lambda arr: ffi.cast("int8_t *", ffi.from_buffer(arr))
    i32 = lambda arr: ffi.cast("int32_t *", ffi.from_buffer(arr))
    if kind == "conv":
      naive = lambda: naive_fn(i8(x), hw, hw, cin, i8(w), cout, k, s, pad,
                               i32(bias), i32(m0), i32(sh), 3, -2, -128, 127,
                               i8(y), ho, ho)
    else:
      naive = lambda: naive_fn(i8(x), hw, hw, cin, i8(w), k, s, pad,
                               i32(bias), i32(m0), i32(sh), 3, -2, -128, 127,
                               i8(y), ho, ho)
    naive()
    assert np.array_equal(y, ref()), f"naive C disagrees on {name}"
    assert np.array_equal(opt(), y) and np.array_equal(plain(), y)
    t = {n: _best(f, a.repeat) for n, f in
         (("naive", naive), ("plain", plain), ("opt", opt), ("ref", ref))}
    rate = {n: macs / v / 1e6 for n, v in t.items()}
    ratios.append(rate["opt"] / rate["naive"])
    print(f"| {name} | {macs / 1e6:.2f} | {rate['naive']:.0f} | "
          f"{rate['plain']:.0f} | {rate['opt']:.0f} | {rate['ref']:.0f} | "
          f"{ratios[-1]:.2f}x |")
  worst = min(ratios)
  print(f"target: optimised >= 2x naive C on every layer: worst {worst:.2f}x, "
        f"geometric mean {np.exp(np.mean(np.log(ratios))):.2f}x -> "
        f"{'met' if worst >= 2 else 'MISSED'}")


if __name__ == "__main__":
  main()
