"""Int8 quantization with TensorFlow Lite's semantics, in integer numpy.

Conventions (TFLite int8):
  activations  int8, per tensor, asymmetric: real = s * (q - zp), zp in
               [-128, 127], the real range always contains 0
  weights      int8 in [-127, 127], symmetric (zp 0), per output channel
  bias         int32, scale s_in * s_w[c], zero point 0

Requantization of an int32 accumulator to int8 (`requantize`):
  M = s_in * s_w[c] / s_out = M0 * 2^shift, M0 a Q31 int32 in [2^30, 2^31)
  (`quantize_multiplier`, frexp-style), then
  out = clamp(RDBPOT(SRDHM(acc << max(shift, 0), M0), max(-shift, 0)) + zp_out)
with SRDHM = SaturatingRoundingDoublingHighMul and RDBPOT =
RoundingDivideByPOT exactly as gemmlowp/TFLite define them. The left shift is
a two's-complement int32 shift (it wraps, as TFLite's int32 multiply by
2^shift does on every platform we target; it only matters for multipliers
above 1, which conv layers do not produce in practice).

Every function here uses int32/int64 arithmetic only; the C kernels are
tested bit for bit against them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


class QuantError(ValueError):
  """An invalid quantization parameter or range."""


# ---------------------------------------------------------------- multipliers

def quantize_multiplier(m: float) -> tuple[int, int]:
  """Real multiplier -> (Q31 multiplier M0, shift) with m ~= M0 * 2^(shift-31).

  The TFLite `QuantizeMultiplier` convention: frexp gives m = q * 2^shift,
  q in [0.5, 1); M0 = round(q * 2^31) (half away from zero); a rounding up to
  2^31 halves M0 and bumps the shift; shifts below -31 flush to (0, 0).
  """
  if not math.isfinite(m) or m < 0:
    raise QuantError(f"multiplier must be finite and >= 0, got {m!r}.")
  if m == 0.0:
    return 0, 0
  q, shift = math.frexp(m)
  q_fixed = _round_half_away(q * (1 << 31))
  if q_fixed == (1 << 31):
    q_fixed //= 2
    shift += 1
  if shift < -31:
    return 0, 0
  if shift > 30:
    raise QuantError(f"multiplier {m!r} is too large (shift {shift} > 30).")
  return int(q_fixed), int(shift)


def quantize_multipliers(ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Vector form of `quantize_multiplier`: int32 multipliers, int32 shifts."""
  pairs = [quantize_multiplier(float(m)) for m in np.ravel(ms)]
  return (np.array([p[0] for p in pairs], np.int32),
          np.array([p[1] for p in pairs], np.int32))


def _round_half_away(x: float) -> int:
  return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """SaturatingRoundingDoublingHighMul of int32 arrays (broadcasting)."""
  a = np.asarray(a, np.int64)
  b = np.asarray(b, np.int64)
  overflow = (a == b) & (a == INT32_MIN)
  ab = a * b
  nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
  s = ab + nudge
  # C division truncates toward zero.
  q = np.where(s >= 0, s >> 31, -((-s) >> 31))
  return np.where(overflow, INT32_MAX, q).astype(np.int32)


def rdbpot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
  """RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
  x = np.asarray(x, np.int64)
  e = np.asarray(exponent, np.int64)
  mask = (np.int64(1) << e) - 1
  remainder = x & mask
  threshold = (mask >> 1) + (x < 0)
  return ((x >> e) + (remainder > threshold)).astype(np.int32)


def wrap_int32(x: np.ndarray) -> np.ndarray:
  """Two's-complement wrap of int64 values to int32."""
  x = np.asarray(x, np.int64)
  return ((x + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def multiply_by_quantized_multiplier(x: np.ndarray, m0: np.ndarray,
                                     shift: np.ndarray) -> np.ndarray:
  """TFLite MultiplyByQuantizedMultiplier on int32 x (broadcasting)."""
  shift = np.asarray(shift, np.int64)
  left = np.maximum(shift, 0)
  right = np.maximum(-shift, 0)
  shifted = wrap_int32(np.asarray(x, np.int64) << left)
  return rdbpot(srdhm(shifted, m0), right)


def requantize(acc: np.ndarray, m0: np.ndarray, shift: np.ndarray,
               zp_out: int, act_min: int = -128, act_max: int = 127
               ) -> np.ndarray:
  """int32 accumulators [..., C] -> int8, per-channel (m0, shift) [C]."""
  out = multiply_by_quantized_multiplier(acc, m0, shift).astype(np.int64)
  return np.clip(out + zp_out, act_min, act_max).astype(np.int8)


# ---------------------------------------------------------------- tensors

@dataclasses.dataclass(frozen=True)
class QParams:
  """Per-tensor activation quantization: real = scale * (q - zero_point)."""
  scale: float
  zero_point: int

  def __post_init__(self):
    if not (self.scale > 0 and math.isfinite(self.scale)):
      raise QuantError(f"scale must be finite and > 0, got {self.scale!r}.")
    if not -128 <= self.zero_point <= 127:
      raise QuantError(f"zero point {self.zero_point} is outside [-128, 127].")


def activation_qparams(lo: float, hi: float) -> QParams:
  """Asymmetric int8 parameters covering [lo, hi] (widened to contain 0), the
  TFLite nudged-zero-point rule."""
  lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
  if not (math.isfinite(lo) and math.isfinite(hi)):
    raise QuantError(f"range [{lo}, {hi}] is not finite.")
  if hi == lo:
    return QParams(1.0, 0)
  scale = (hi - lo) / 255.0
  zp = _round_half_away(-128 - lo / scale)
  return QParams(scale, int(min(127, max(-128, zp))))


def quantize(x: np.ndarray, qp: QParams) -> np.ndarray:
  q = np.round(np.asarray(x, np.float64) / qp.scale) + qp.zero_point
  return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, qp: QParams) -> np.ndarray:
  return (np.asarray(q, np.float64) - qp.zero_point) * qp.scale


def weight_scales(w: np.ndarray, channel_axis: int = -1) -> np.ndarray:
  """Symmetric per-channel scales max|w| / 127 (1.0 for all-zero channels)."""
  axes = tuple(i for i in range(w.ndim) if i != channel_axis % w.ndim)
  amax = np.abs(np.asarray(w, np.float64)).max(axis=axes)
  return np.where(amax > 0, amax / 127.0, 1.0)


def quantize_weights(w: np.ndarray, channel_axis: int = -1
                     ) -> tuple[np.ndarray, np.ndarray]:
  """float weights -> (int8 in [-127, 127], per-channel scales)."""
  s = weight_scales(w, channel_axis)
  shape = [1] * w.ndim
  shape[channel_axis] = -1
  q = np.clip(np.round(np.asarray(w, np.float64) / s.reshape(shape)), -127, 127)
  return q.astype(np.int8), s


def quantize_bias(b: np.ndarray, s_in: float, s_w: np.ndarray) -> np.ndarray:
  """float bias -> int32 with scale s_in * s_w[c] (zero point 0)."""
  q = np.round(np.asarray(b, np.float64) / (s_in * s_w))
  if np.any(np.abs(q) > INT32_MAX):
    raise QuantError("bias does not fit int32 at scale s_in * s_w; the weight "
                     "scale is degenerate (check for all-zero channels).")
  return q.astype(np.int32)


def relu6_range(qp: QParams) -> tuple[int, int]:
  """The int8 clamp range of ReLU6 at output parameters `qp`."""
  return (max(-128, qp.zero_point),
          min(127, qp.zero_point + _round_half_away(6.0 / qp.scale)))


def fold_bn(w: np.ndarray, bn_params: dict, bn_state: dict, eps: float,
            channel_axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
  """Folds batch norm (eval mode) into the preceding bias-free conv:
  w' = w * g / sqrt(v + eps), b' = beta - mean * g / sqrt(v + eps)."""
  g = np.asarray(bn_params["scale"], np.float64)
  beta = np.asarray(bn_params["bias"], np.float64)
  mean = np.asarray(bn_state["mean"], np.float64)
  var = np.asarray(bn_state["var"], np.float64)
  f = g / np.sqrt(var + eps)
  shape = [1] * w.ndim
  shape[channel_axis] = -1
  return np.asarray(w, np.float64) * f.reshape(shape), beta - mean * f
