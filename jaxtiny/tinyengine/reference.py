"""Integer reference kernels: the oracle every C kernel is tested against.

int8 tensors in, int8 tensors out, int32/int64 arithmetic only. Layouts:
activations NHWC; conv filters OHWI [O, kh, kw, I]; depthwise filters
[kh, kw, C]; fully-connected weights [O, I]. Padding is explicit (top,
bottom, left, right) and padded positions contribute nothing (they hold the
input zero point, i.e. real 0), as in TFLite.
"""

from __future__ import annotations

import numpy as np

from jaxtiny.tinyengine import quant

Pad = tuple[int, int, int, int]


def out_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int) -> int:
  return (size + pad_lo + pad_hi - k) // stride + 1


def same_padding(k: int) -> Pad:
  p = k // 2
  return (p, p, p, p)


def _patches(xc: np.ndarray, kh: int, kw: int, stride: int, pad: Pad
             ) -> np.ndarray:
  """Zero-padded (centred) int64 input -> [N, Ho, Wo, kh, kw, C] patches."""
  n, h, w, c = xc.shape
  pt, pb, pl, pr = pad
  xp = np.zeros((n, h + pt + pb, w + pl + pr, c), np.int64)
  xp[:, pt:pt + h, pl:pl + w] = xc
  ho, wo = out_size(h, kh, stride, pt, pb), out_size(w, kw, stride, pl, pr)
  out = np.empty((n, ho, wo, kh, kw, c), np.int64)
  for i in range(kh):
    for j in range(kw):
      out[:, :, :, i, j] = xp[:, i:i + (ho - 1) * stride + 1:stride,
                              j:j + (wo - 1) * stride + 1:stride]
  return out


def conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, zp_in: int,
         zp_out: int, m0: np.ndarray, shift: np.ndarray, stride: int,
         pad: Pad, act_min: int = -128, act_max: int = 127) -> np.ndarray:
  """Convolution, int8 NHWC x [N,H,W,I], OHWI w [O,kh,kw,I], int32 bias [O]."""
  o, kh, kw, i = w.shape
  xc = x.astype(np.int64) - zp_in
  pat = _patches(xc, kh, kw, stride, pad)
  acc = np.einsum("nhwijc,oijc->nhwo", pat, w.astype(np.int64))
  acc = acc + bias.astype(np.int64)
  return quant.requantize(quant.wrap_int32(acc), m0, shift, zp_out, act_min,
                          act_max)


def depthwise_conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, zp_in: int,
                   zp_out: int, m0: np.ndarray, shift: np.ndarray, stride: int,
                   pad: Pad, act_min: int = -128, act_max: int = 127
                   ) -> np.ndarray:
  """Depthwise convolution, x [N,H,W,C], w [kh,kw,C], bias [C]."""
  kh, kw, c = w.shape
  xc = x.astype(np.int64) - zp_in
  pat = _patches(xc, kh, kw, stride, pad)
  acc = np.einsum("nhwijc,ijc->nhwc", pat, w.astype(np.int64))
  acc = acc + bias.astype(np.int64)
  return quant.requantize(quant.wrap_int32(acc), m0, shift, zp_out, act_min,
                          act_max)


def fully_connected(x: np.ndarray, w: np.ndarray, bias: np.ndarray,
                    zp_in: int, zp_out: int, m0: np.ndarray, shift: np.ndarray,
                    act_min: int = -128, act_max: int = 127) -> np.ndarray:
  """x [N, I] int8, w [O, I] int8, bias [O] int32 -> [N, O] int8."""
  acc = (x.astype(np.int64) - zp_in) @ w.astype(np.int64).T
  acc = acc + bias.astype(np.int64)
  return quant.requantize(quant.wrap_int32(acc), m0, shift, zp_out, act_min,
                          act_max)


def global_avgpool(x: np.ndarray, act_min: int = -128, act_max: int = 127
                   ) -> np.ndarray:
  """[N, H, W, C] -> [N, C], same quantization in and out: the sum divided
  by H*W rounded half away from zero (TFLite's int8 average pool)."""
  n, h, w, c = x.shape
  count = h * w
  s = x.astype(np.int64).sum(axis=(1, 2))
  half = count // 2
  avg = np.where(s >= 0, (s + half) // count, -((-s + half) // count))
  return np.clip(avg, act_min, act_max).astype(np.int8)


ADD_LEFT_SHIFT = 20


def add_params(s1: float, s2: float, s_out: float) -> dict:
  """TFLite int8 ADD: both inputs rescaled to twice the larger input scale
  (with 20 bits of headroom), summed, then rescaled to the output."""
  twice_max = 2.0 * max(s1, s2)
  m1, sh1 = quant.quantize_multiplier(s1 / twice_max)
  m2, sh2 = quant.quantize_multiplier(s2 / twice_max)
  mo, sho = quant.quantize_multiplier(
      twice_max / ((1 << ADD_LEFT_SHIFT) * s_out))
  return {"m1": m1, "shift1": sh1, "m2": m2, "shift2": sh2, "m_out": mo,
          "shift_out": sho}


def add(a: np.ndarray, b: np.ndarray, zp_a: int, zp_b: int, zp_out: int,
        m1: int, shift1: int, m2: int, shift2: int, m_out: int,
        shift_out: int, act_min: int = -128, act_max: int = 127
        ) -> np.ndarray:
  """Residual add of two int8 tensors of the same shape."""
  va = quant.wrap_int32((a.astype(np.int64) - zp_a) << ADD_LEFT_SHIFT)
  vb = quant.wrap_int32((b.astype(np.int64) - zp_b) << ADD_LEFT_SHIFT)
  sa = quant.multiply_by_quantized_multiplier(va, m1, shift1).astype(np.int64)
  sb = quant.multiply_by_quantized_multiplier(vb, m2, shift2).astype(np.int64)
  raw = quant.multiply_by_quantized_multiplier(quant.wrap_int32(sa + sb), m_out,
                                               shift_out).astype(np.int64)
  return np.clip(raw + zp_out, act_min, act_max).astype(np.int8)
