"""Python wrappers of the TinyEngine C kernels (cffi module `_tk`).

Each wrapper takes the same arguments as its integer reference in
`reference.py`, checks shapes, dtypes, contiguity and parameter ranges, and
raises `KernelArgumentError` before any C code runs. `variant` picks the plain
kernel or its optimised twin (same results, bit for bit).

Build the module with `make ckernels` (or `pip install -e .`).
"""

from __future__ import annotations

import numpy as np

from jaxtiny.tinyengine import reference

try:
  from jaxtiny.tinyengine import _tk  # type: ignore[attr-defined]
except ImportError as e:  # pragma: no cover - exercised when not built
  _tk = None
  _IMPORT_ERROR = e

Pad = reference.Pad


class KernelArgumentError(ValueError):
  """An argument the C kernel would reject (or misread)."""


def available() -> bool:
  return _tk is not None


def _lib():
  if _tk is None:
    raise ImportError("the TinyEngine C kernels are not built; run "
                      f"`make ckernels` ({_IMPORT_ERROR}).")
  return _tk.lib, _tk.ffi


def _arr(name: str, a: np.ndarray, dtype, ndim: int) -> np.ndarray:
  if not isinstance(a, np.ndarray):
    raise KernelArgumentError(f"{name} must be a numpy array, got "
                              f"{type(a).__name__}.")
  if a.dtype != dtype:
    raise KernelArgumentError(f"{name} must be {np.dtype(dtype).name}, got "
                              f"{a.dtype}.")
  if a.ndim != ndim:
    raise KernelArgumentError(f"{name} must have {ndim} dimensions, got shape "
                              f"{a.shape}.")
  if not a.flags.c_contiguous:
    raise KernelArgumentError(f"{name} must be C-contiguous (use "
                              "np.ascontiguousarray).")
  if a.size == 0:
    raise KernelArgumentError(f"{name} is empty (shape {a.shape}).")
  return a


def _int8_value(name: str, v: int) -> int:
  if not -128 <= int(v) <= 127:
    raise KernelArgumentError(f"{name} must be in [-128, 127], got {v}.")
  return int(v)


def _act(act_min: int, act_max: int) -> tuple[int, int]:
  lo, hi = _int8_value("act_min", act_min), _int8_value("act_max", act_max)
  if lo > hi:
    raise KernelArgumentError(f"act_min {lo} > act_max {hi}.")
  return lo, hi


def _requant(ffi, m0: np.ndarray, shift: np.ndarray, channels: int):
  m0 = _arr("m0", m0, np.int32, 1)
  shift = _arr("shift", shift, np.int32, 1)
  if len(m0) != channels or len(shift) != channels:
    raise KernelArgumentError(f"m0 and shift need {channels} entries (one per "
                              f"output channel), got {len(m0)} and "
                              f"{len(shift)}.")
  if m0.min() < 0:
    raise KernelArgumentError("m0 must be >= 0 (Q31 multipliers).")
  if shift.min() < -31 or shift.max() > 30:
    raise KernelArgumentError("shift must be in [-31, 30].")
  q = ffi.new("tk_requant *")
  q.multiplier = ffi.cast("const int32_t *", ffi.from_buffer(m0))
  q.shift = ffi.cast("const int32_t *", ffi.from_buffer(shift))
  return q, (m0, shift)


def _dims(ffi, shape):
  d = ffi.new("tk_dims *")
  d.n, d.h, d.w, d.c = (int(s) for s in shape)
  return d


def _geometry(x: np.ndarray, kh: int, kw: int, stride: int, pad: Pad
              ) -> tuple[int, int]:
  if stride < 1:
    raise KernelArgumentError(f"stride must be >= 1, got {stride}.")
  if len(pad) != 4 or min(pad) < 0:
    raise KernelArgumentError(f"pad must be 4 non-negative ints (top, bottom, "
                              f"left, right), got {pad}.")
  pt, pb, pl, pr = (int(p) for p in pad)
  if pt >= kh or pb >= kh or pl >= kw or pr >= kw:
    raise KernelArgumentError(f"padding {pad} must be smaller than the "
                              f"{kh}x{kw} kernel.")
  ho = reference.out_size(x.shape[1], kh, stride, pt, pb)
  wo = reference.out_size(x.shape[2], kw, stride, pl, pr)
  if ho < 1 or wo < 1:
    raise KernelArgumentError(f"a {kh}x{kw} window does not fit input "
                              f"{x.shape[1]}x{x.shape[2]} with padding {pad}.")
  return ho, wo


def _params(ffi, stride, pad, zp_in, zp_out, act_min, act_max):
  p = ffi.new("tk_conv_params *")
  p.stride = int(stride)
  p.pad_top, p.pad_left = int(pad[0]), int(pad[2])
  p.input_zp = _int8_value("zp_in", zp_in)
  p.output_zp = _int8_value("zp_out", zp_out)
  p.act_min, p.act_max = _act(act_min, act_max)
  return p


def _check(status: int, name: str) -> None:
  if status != 0:
    raise RuntimeError(f"{name} returned status {status} after the Python "
                       "checks passed; this is a bug, please report it.")


def _ptr(ffi, ctype: str, a: np.ndarray):
  return ffi.cast(ctype, ffi.from_buffer(a))


def conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, zp_in: int,
         zp_out: int, m0: np.ndarray, shift: np.ndarray, stride: int,
         pad: Pad, act_min: int = -128, act_max: int = 127,
         variant: str = "plain", tile: int = 4) -> np.ndarray:
  """Convolution (OHWI filters). A 1x1, stride-1, unpadded conv runs the
  pointwise kernel, anything else the im2col kernel with a scratch buffer of
  `tile` output pixels; `variant` "plain" or "4ch" (optimised)."""
  lib, ffi = _lib()
  x = _arr("x", x, np.int8, 4)
  w = _arr("w", w, np.int8, 4)
  bias = _arr("bias", bias, np.int32, 1)
  o, kh, kw, cin = w.shape
  if cin != x.shape[3]:
    raise KernelArgumentError(f"filter has {cin} input channels, input has "
                              f"{x.shape[3]}.")
  if len(bias) != o:
    raise KernelArgumentError(f"bias needs {o} entries, got {len(bias)}.")
  ho, wo = _geometry(x, kh, kw, stride, pad)
  q, keep = _requant(ffi, m0, shift, o)
  p = _params(ffi, stride, pad, zp_in, zp_out, act_min, act_max)
  out = np.empty((x.shape[0], ho, wo, o), np.int8)
  args = (p, q, _dims(ffi, x.shape), _ptr(ffi, "const int8_t *", x),
          _dims(ffi, w.shape), _ptr(ffi, "const int8_t *", w),
          _ptr(ffi, "const int32_t *", bias), _dims(ffi, out.shape),
          _ptr(ffi, "int8_t *", out))
  pointwise = kh == kw == 1 and stride == 1 and tuple(pad) == (0, 0, 0, 0)
  if variant not in ("plain", "4ch"):
    raise KernelArgumentError(f"variant must be 'plain' or '4ch', got "
                              f"{variant!r}.")
  if variant == "4ch" and pointwise and cin > 1024:
    variant = "plain"              # The optimised kernel's stack limit.
  if pointwise:
    fn = lib.tk_convolve_1x1_4ch_s8 if variant == "4ch" else lib.tk_convolve_1x1_s8
    _check(fn(*args), fn.__name__)
  else:
    if tile < 1:
      raise KernelArgumentError(f"tile must be >= 1, got {tile}.")
    size = lib.tk_convolve_s8_get_buffer_size(args[4], int(tile))
    scratch = np.empty(size // 2, np.int16)
    fn = lib.tk_convolve_4ch_s8 if variant == "4ch" else lib.tk_convolve_s8
    _check(fn(*args, _ptr(ffi, "int16_t *", scratch), size), fn.__name__)
  del keep
  return out


def depthwise_conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, zp_in: int,
                   zp_out: int, m0: np.ndarray, shift: np.ndarray, stride: int,
                   pad: Pad, act_min: int = -128, act_max: int = 127,
                   variant: str = "plain") -> np.ndarray:
  """Depthwise convolution, filters [kh, kw, C]. `variant`: "plain",
  "unrolled" (optimised) or "inplace" (the output overwrites a copy of the
  input buffer, with a one-channel scratch plane)."""
  lib, ffi = _lib()
  x = _arr("x", x, np.int8, 4)
  w = _arr("w", w, np.int8, 3)
  bias = _arr("bias", bias, np.int32, 1)
  kh, kw, c = w.shape
  if c != x.shape[3] or len(bias) != c:
    raise KernelArgumentError(f"filter ({c}), bias ({len(bias)}) and input "
                              f"({x.shape[3]}) channel counts differ.")
  ho, wo = _geometry(x, kh, kw, stride, pad)
  q, keep = _requant(ffi, m0, shift, c)
  p = _params(ffi, stride, pad, zp_in, zp_out, act_min, act_max)
  out_shape = (x.shape[0], ho, wo, c)
  fdims = _dims(ffi, (1, kh, kw, c))
  if variant == "inplace":
    if ho * wo > x.shape[1] * x.shape[2]:
      raise KernelArgumentError("in-place depthwise needs an output no larger "
                                "than its input (padding too large).")
    buf = x.copy()
    in_d, out_d = _dims(ffi, x.shape), _dims(ffi, out_shape)
    size = lib.tk_depthwise_conv_inplace_s8_get_buffer_size(p, in_d, fdims,
                                                            out_d)
    scratch = np.empty(max(size, 1), np.int8)
    _check(lib.tk_depthwise_conv_inplace_s8(
        p, q, in_d, _ptr(ffi, "int8_t *", buf), fdims,
        _ptr(ffi, "const int8_t *", w), _ptr(ffi, "const int32_t *", bias),
        out_d, _ptr(ffi, "int8_t *", scratch), size),
        "tk_depthwise_conv_inplace_s8")
    del keep
    n_out = int(np.prod(out_shape))
    return buf.reshape(-1)[:n_out].reshape(out_shape).copy()
  if variant not in ("plain", "unrolled"):
    raise KernelArgumentError(f"variant must be 'plain', 'unrolled' or "
                              f"'inplace', got {variant!r}.")
  out = np.empty(out_shape, np.int8)
  fn = (lib.tk_depthwise_conv_unrolled_s8 if variant == "unrolled"
        else lib.tk_depthwise_conv_s8)
  _check(fn(p, q, _dims(ffi, x.shape), _ptr(ffi, "const int8_t *", x), fdims,
            _ptr(ffi, "const int8_t *", w), _ptr(ffi, "const int32_t *", bias),
            _dims(ffi, out_shape), _ptr(ffi, "int8_t *", out)), fn.__name__)
  del keep
  return out


def fully_connected(x: np.ndarray, w: np.ndarray, bias: np.ndarray,
                    zp_in: int, zp_out: int, m0: np.ndarray, shift: np.ndarray,
                    act_min: int = -128, act_max: int = 127) -> np.ndarray:
  lib, ffi = _lib()
  x = _arr("x", x, np.int8, 2)
  w = _arr("w", w, np.int8, 2)
  bias = _arr("bias", bias, np.int32, 1)
  o, i = w.shape
  if x.shape[1] != i or len(bias) != o:
    raise KernelArgumentError(f"weights [{o}, {i}], bias [{len(bias)}] and "
                              f"input [N, {x.shape[1]}] do not agree.")
  q, keep = _requant(ffi, m0, shift, o)
  lo, hi = _act(act_min, act_max)
  out = np.empty((x.shape[0], o), np.int8)
  _check(lib.tk_fully_connected_s8(
      _int8_value("zp_in", zp_in), _int8_value("zp_out", zp_out), lo, hi, q,
      x.shape[0], i, _ptr(ffi, "const int8_t *", x), o,
      _ptr(ffi, "const int8_t *", w), _ptr(ffi, "const int32_t *", bias),
      _ptr(ffi, "int8_t *", out)), "tk_fully_connected_s8")
  del keep
  return out


def global_avgpool(x: np.ndarray, act_min: int = -128, act_max: int = 127
                   ) -> np.ndarray:
  lib, ffi = _lib()
  x = _arr("x", x, np.int8, 4)
  if x.shape[1] * x.shape[2] > (1 << 23):
    raise KernelArgumentError("feature map too large for an int32 sum.")
  lo, hi = _act(act_min, act_max)
  out = np.empty((x.shape[0], x.shape[3]), np.int8)
  _check(lib.tk_avgpool_s8(_dims(ffi, x.shape), _ptr(ffi, "const int8_t *", x),
                           lo, hi, _ptr(ffi, "int8_t *", out)), "tk_avgpool_s8")
  return out


def add(a: np.ndarray, b: np.ndarray, zp_a: int, zp_b: int, zp_out: int,
        m1: int, shift1: int, m2: int, shift2: int, m_out: int,
        shift_out: int, act_min: int = -128, act_max: int = 127
        ) -> np.ndarray:
  lib, ffi = _lib()
  if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray) or \
      a.shape != b.shape:
    raise KernelArgumentError("add needs two numpy arrays of the same shape.")
  a = _arr("a", a, np.int8, a.ndim)
  b = _arr("b", b, np.int8, b.ndim)
  for name, m in (("m1", m1), ("m2", m2), ("m_out", m_out)):
    if not 0 <= int(m) < (1 << 31):
      raise KernelArgumentError(f"{name} must be a Q31 multiplier >= 0.")
  for name, s in (("shift1", shift1), ("shift2", shift2),
                  ("shift_out", shift_out)):
    if not -31 <= int(s) <= 30:
      raise KernelArgumentError(f"{name} must be in [-31, 30], got {s}.")
  p = ffi.new("tk_add_params *")
  p.a_zp, p.b_zp = _int8_value("zp_a", zp_a), _int8_value("zp_b", zp_b)
  p.output_zp = _int8_value("zp_out", zp_out)
  p.a_multiplier, p.a_shift = int(m1), int(shift1)
  p.b_multiplier, p.b_shift = int(m2), int(shift2)
  p.output_multiplier, p.output_shift = int(m_out), int(shift_out)
  p.act_min, p.act_max = _act(act_min, act_max)
  out = np.empty_like(a)
  _check(lib.tk_add_s8(p, a.size, _ptr(ffi, "const int8_t *", a),
                       _ptr(ffi, "const int8_t *", b),
                       _ptr(ffi, "int8_t *", out)), "tk_add_s8")
  return out


def graph_kernels(variant: str = "plain") -> dict:
  """Kernels for `graph.run(..., kernels=...)`: "plain", "optimised" or
  "inplace" (depthwise in place, other kernels optimised)."""
  conv_v = "4ch" if variant in ("optimised", "inplace") else "plain"
  dw_v = {"plain": "plain", "optimised": "unrolled", "inplace": "inplace"}[
      variant]
  return {
      "conv": lambda x, a: conv(x, **a, variant=conv_v),
      "depthwise": lambda x, a: depthwise_conv(x, **a, variant=dw_v),
      "fc": lambda x, a: fully_connected(x, **a),
      "avgpool": lambda x, a: global_avgpool(x, **a),
      "add": lambda x, y, a: add(x, y, **a),
  }
