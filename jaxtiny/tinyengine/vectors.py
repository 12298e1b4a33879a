"""Test vectors for the standalone C test driver (csrc/test/test_driver.c).

The integer reference computes the expected output of randomized cases and
writes them, with their inputs and parameters, in the driver's binary record
format (little-endian int32 headers, raw int8/int32 arrays). The driver runs
every kernel variant on them; built with sanitizers it also checks memory and
undefined behaviour.

  python -m jaxtiny.tinyengine.vectors OUT.bin [--cases=200] [--seed=0]
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
from typing import BinaryIO

import numpy as np

from jaxtiny import fileio
from jaxtiny.tinyengine import quant
from jaxtiny.tinyengine import reference

CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
CONV, DW, FC, AVGPOOL, ADD = 1, 2, 3, 4, 5


def kernel_sources() -> list[str]:
  return sorted(glob.glob(os.path.join(CSRC, "*", "tk_*.c")))


def _i32(f: BinaryIO, *vals: int) -> None:
  f.write(np.asarray(vals, "<i4").tobytes())


def random_zero_point(rng) -> int:
  """A zero point, at either extreme 2 times in 3."""
  return int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))


def random_act_range(rng) -> tuple[int, int]:
  """A clamp range: the full int8 range 30 % of the time, else random."""
  if rng.random() < 0.3:
    return -128, 127
  lo = int(rng.integers(-128, 0))
  return lo, int(rng.integers(lo, 128))


def random_requant(rng, c):
  """Per-channel (m0, shift) for multipliers 1e-5 to 2 (both shift signs)."""
  return quant.quantize_multipliers(np.exp(rng.uniform(np.log(1e-5),
                                                       np.log(2.0), c)))


def _window_case(rng, kernels):
  while True:
    n, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 12)), \
        int(rng.integers(1, 12))
    k, s = int(rng.choice(kernels)), int(rng.choice([1, 2]))
    pad = tuple(int(rng.integers(0, k)) for _ in range(4))
    if rng.random() < 0.3:
      pad = reference.same_padding(k) if k % 2 else pad
    ho = reference.out_size(h, k, s, pad[0], pad[1])
    wo = reference.out_size(w, k, s, pad[2], pad[3])
    if ho >= 1 and wo >= 1:
      return n, h, w, k, s, pad, ho, wo


def write_case(f: BinaryIO, kind: int, rng: np.random.Generator) -> None:
  lo, hi = random_act_range(rng)
  zi, zo = random_zero_point(rng), random_zero_point(rng)
  if kind in (CONV, DW):
    n, h, w, k, s, pad, ho, wo = _window_case(
        rng, (1, 2, 3, 4, 5, 7) if kind == CONV else (1, 3, 5, 7))
    if kind == CONV and rng.random() < 0.25:
      k, s, pad, ho, wo = 1, 1, (0, 0, 0, 0), h, w
    cin = int(rng.integers(1, 12 if kind == CONV else 80))
    cout = int(rng.integers(1, 12)) if kind == CONV else cin
    x = rng.integers(-128, 128, (n, h, w, cin), dtype=np.int8)
    shape = (cout, k, k, cin) if kind == CONV else (k, k, cin)
    wt = rng.integers(-127, 128, shape, dtype=np.int8)
    bias = rng.integers(-30000, 30000, cout).astype(np.int32)
    m0, sh = random_requant(rng, cout)
    fn = reference.conv if kind == CONV else reference.depthwise_conv
    y = fn(x, wt, bias, zi, zo, m0, sh, s, pad, lo, hi)
    _i32(f, kind, n, h, w, cin, cout, k, k, s, pad[0], pad[2], ho, wo, zi, zo,
         lo, hi)
    for a in (x, wt, bias, m0, sh, y):
      f.write(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
  elif kind == FC:
    b, i, o = int(rng.integers(1, 4)), int(rng.integers(1, 300)), \
        int(rng.integers(1, 20))
    x = rng.integers(-128, 128, (b, i), dtype=np.int8)
    wt = rng.integers(-127, 128, (o, i), dtype=np.int8)
    bias = rng.integers(-30000, 30000, o).astype(np.int32)
    m0, sh = random_requant(rng, o)
    y = reference.fully_connected(x, wt, bias, zi, zo, m0, sh, lo, hi)
    _i32(f, kind, b, i, o, zi, zo, lo, hi)
    for a in (x, wt, bias, m0, sh, y):
      f.write(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
  elif kind == AVGPOOL:
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 9)),
             int(rng.integers(1, 9)), int(rng.integers(1, 17)))
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    y = reference.global_avgpool(x, lo, hi)
    _i32(f, kind, *shape, lo, hi)
    f.write(x.tobytes())
    f.write(y.tobytes())
  elif kind == ADD:
    size = int(rng.integers(1, 500))
    a = rng.integers(-128, 128, size, dtype=np.int8)
    b = rng.integers(-128, 128, size, dtype=np.int8)
    p = reference.add_params(*np.exp(rng.uniform(np.log(1e-3), 0.0, 3)))
    za, zb = random_zero_point(rng), random_zero_point(rng)
    y = reference.add(a, b, za, zb, zo, **p, act_min=lo, act_max=hi)
    _i32(f, kind, size, za, zb, zo, p["m1"], p["shift1"], p["m2"],
         p["shift2"], p["m_out"], p["shift_out"], lo, hi)
    for arr in (a, b, y):
      f.write(arr.tobytes())
  else:
    raise ValueError(f"unknown kind {kind}")


def write_vectors(path: str, cases_per_kind: int, seed: int) -> int:
  """Writes `cases_per_kind` random cases of every kernel; returns the count."""
  import io
  rng = np.random.default_rng(seed)
  buf = io.BytesIO()
  kinds = [CONV, DW, FC, AVGPOOL, ADD] * cases_per_kind
  for kind in kinds:
    write_case(buf, kind, rng)
  fileio.atomic_write_bytes(path, buf.getvalue())
  return len(kinds)


def build_driver(out_path: str, sanitize: bool = True,
                 cc: str = "cc") -> None:
  """Compiles the driver with every kernel (optionally with ASan + UBSan)."""
  flags = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra"]
  if sanitize:
    flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
              "-fno-omit-frame-pointer"]
  cmd = [cc, *flags, "-I", os.path.join(CSRC, "include"),
         os.path.join(CSRC, "test", "test_driver.c"), *kernel_sources(),
         "-o", out_path]
  proc = subprocess.run(cmd, capture_output=True, text=True)
  if proc.returncode != 0:
    raise RuntimeError(f"building the C test driver failed:\n{proc.stderr}")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("out")
  p.add_argument("--cases", type=int, default=200, help="cases per kernel")
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args()
  print(f"{write_vectors(a.out, a.cases, a.seed)} cases -> {a.out}")


if __name__ == "__main__":
  main()
