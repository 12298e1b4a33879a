"""TFLite int8 arithmetic: multipliers, fixed-point helpers, reference kernels."""


import numpy as np
import pytest

from jaxtiny.tinyengine import quant
from jaxtiny.tinyengine import reference


def _srdhm_exact(a: int, b: int) -> int:
  if a == b == quant.INT32_MIN:
    return quant.INT32_MAX
  ab = a * b
  nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
  s = ab + nudge
  return int(s / (1 << 31)) if abs(s) < (1 << 52) else (
      s // (1 << 31) if s >= 0 else -((-s) // (1 << 31)))


def _rdbpot_exact(x: int, e: int) -> int:
  # Round half away from zero of x / 2^e, computed with Python integers.
  q, r = divmod(abs(x), 1 << e)
  if 2 * r >= (1 << e) and e > 0:
    q += 1
  return q if x >= 0 else -q


@pytest.mark.parametrize("m, want", [
    (1.0, ((1 << 30), 1)),
    (0.5, ((1 << 30), 0)),
    (0.75, (3 << 29, 0)),
    (2.0 ** -40, (0, 0)),          # shift below -31 flushes to zero
    (0.0, (0, 0)),
    (1.0 - 2.0 ** -40, ((1 << 30), 1)),   # rounds to 2^31: halved, shift + 1
])
def test_quantize_multiplier_edge_cases(m, want):
  assert quant.quantize_multiplier(m) == want


def test_quantize_multiplier_is_accurate_and_in_range():
  rng = np.random.default_rng(0)
  for m in np.exp(rng.uniform(np.log(1e-9), np.log(1e3), 2000)):
    m0, shift = quant.quantize_multiplier(float(m))
    assert (1 << 30) <= m0 <= quant.INT32_MAX
    assert abs(m0 * 2.0 ** (shift - 31) - m) <= m * 2.0 ** -30
  with pytest.raises(quant.QuantError, match="finite and >= 0"):
    quant.quantize_multiplier(-0.1)
  with pytest.raises(quant.QuantError, match="too large"):
    quant.quantize_multiplier(2.0 ** 40)


def test_fixed_point_helpers_match_exact_integer_definitions():
  rng = np.random.default_rng(1)
  edge = [quant.INT32_MIN, quant.INT32_MIN + 1, -1, 0, 1, quant.INT32_MAX,
          1 << 30, -(1 << 30)]
  a = np.concatenate([rng.integers(quant.INT32_MIN, quant.INT32_MAX, 3000),
                      np.repeat(edge, len(edge))]).astype(np.int32)
  b = np.concatenate([rng.integers(quant.INT32_MIN, quant.INT32_MAX, 3000),
                      np.tile(edge, len(edge))]).astype(np.int32)
  got = quant.srdhm(a, b)
  want = [_srdhm_exact(int(x), int(y)) for x, y in zip(a, b)]
  np.testing.assert_array_equal(got, np.array(want, np.int64))
  e = rng.integers(0, 31, len(a))
  got = quant.rdbpot(a, e)
  want = [_rdbpot_exact(int(x), int(k)) for x, k in zip(a, e)]
  np.testing.assert_array_equal(got, np.array(want, np.int64))


def test_requantize_tracks_the_real_multiplier_and_saturates():
  rng = np.random.default_rng(2)
  acc = rng.integers(-(1 << 20), 1 << 20, (500, 4)).astype(np.int32)
  ms = np.array([3e-4, 0.01, 0.2, 0.9])
  m0, shift = quant.quantize_multipliers(ms)
  out = quant.requantize(acc, m0, shift, zp_out=-5)
  ideal = np.clip(np.round(acc * ms) - 5, -128, 127)
  assert np.abs(out.astype(np.int64) - ideal).max() <= 1
  assert out.dtype == np.int8
  big = np.full((1, 4), 1 << 28, np.int32)
  np.testing.assert_array_equal(quant.requantize(big, m0, shift, 0)[0, 1:], 127)
  np.testing.assert_array_equal(
      quant.requantize(-big, m0, shift, 0)[0, 1:], -128)
  # Clamp range (a fused ReLU6) is honoured.
  clamped = quant.requantize(acc, m0, shift, zp_out=-5, act_min=-5, act_max=20)
  assert clamped.min() >= -5 and clamped.max() <= 20


def test_activation_params_contain_zero_exactly_and_round_trip():
  for lo, hi in ((-1.0, 3.0), (0.0, 6.0), (0.5, 2.0), (-4.0, -1.0)):
    qp = quant.activation_qparams(lo, hi)
    assert -128 <= qp.zero_point <= 127
    assert quant.dequantize(quant.quantize(np.array([0.0]), qp), qp)[0] == 0.0
    x = np.linspace(min(lo, 0), max(hi, 0), 101)
    err = np.abs(quant.dequantize(quant.quantize(x, qp), qp) - x)
    assert err.max() <= qp.scale / 2 + 1e-9
  assert quant.relu6_range(quant.activation_qparams(0.0, 6.0)) == (-128, 127)
  with pytest.raises(quant.QuantError, match="zero point"):
    quant.QParams(0.1, 200)


def test_weight_quantization_is_symmetric_per_channel():
  rng = np.random.default_rng(3)
  w = rng.normal(size=(6, 3, 3, 5)) * np.array([1e-3, 0.1, 1, 10, 0.5, 0])[:,
                                                                        None, None, None]
  q, s = quant.quantize_weights(w, channel_axis=0)
  assert q.min() >= -127 and q.max() <= 127
  assert np.all(np.abs(q).reshape(6, -1).max(axis=1)[:5] == 127)
  assert np.all(q[5] == 0)
  back = q * s[:, None, None, None]
  assert np.all(np.abs(back - w) <= s[:, None, None, None] / 2 + 1e-12)


def test_bn_folding_matches_conv_then_bn():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(7, 3))
  w = rng.normal(size=(3, 4))
  bn_p = {"scale": rng.uniform(0.5, 2, 4), "bias": rng.normal(size=4)}
  bn_s = {"mean": rng.normal(size=4), "var": rng.uniform(0.1, 2, 4)}
  y = x @ w
  want = (y - bn_s["mean"]) / np.sqrt(bn_s["var"] + 1e-5) * bn_p["scale"] \
      + bn_p["bias"]
  wf, bf = quant.fold_bn(w, bn_p, bn_s, 1e-5)
  np.testing.assert_allclose(x @ wf + bf, want, rtol=1e-10)


def _rand_case(rng, n, h, w, cin, cout, k):
  x = rng.integers(-128, 128, (n, h, w, cin), dtype=np.int8)
  wt = rng.integers(-127, 128, (cout, k, k, cin), dtype=np.int8)
  bias = rng.integers(-5000, 5000, cout).astype(np.int32)
  return x, wt, bias


@pytest.mark.parametrize("k, stride, pad", [(3, 1, (1, 1, 1, 1)),
                                            (3, 2, (1, 1, 1, 1)),
                                            (5, 2, (2, 1, 2, 1)),
                                            (1, 1, (0, 0, 0, 0))])
def test_reference_conv_matches_real_arithmetic(k, stride, pad):
  rng = np.random.default_rng(k * 10 + stride)
  x, w, bias = _rand_case(rng, 2, 9, 8, 3, 5, k)
  zp_in, zp_out = 7, -3
  m = rng.uniform(1e-4, 3e-3, 5)
  m0, shift = quant.quantize_multipliers(m)
  out = reference.conv(x, w, bias, zp_in, zp_out, m0, shift, stride, pad)
  # Float: pad the centred input with zeros, correlate, scale, round.
  xc = x.astype(np.float64) - zp_in
  pt, pb, pl, pr = pad
  xp = np.pad(xc, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho = reference.out_size(9, k, stride, pt, pb)
  wo = reference.out_size(8, k, stride, pl, pr)
  acc = np.zeros((2, ho, wo, 5))
  for i in range(ho):
    for j in range(wo):
      patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k]
      acc[:, i, j] = np.einsum("nijc,oijc->no", patch, w)
  ideal = np.clip(np.round((acc + bias) * m) + zp_out, -128, 127)
  assert out.shape == ideal.shape
  assert np.abs(out - ideal).max() <= 1


def test_reference_add_and_avgpool():
  rng = np.random.default_rng(5)
  qa, qb, qo = (quant.QParams(0.05, 10), quant.QParams(0.02, -20),
                quant.QParams(0.06, 3))
  a = rng.integers(-128, 128, (4, 5, 5, 3), dtype=np.int8)
  b = rng.integers(-128, 128, (4, 5, 5, 3), dtype=np.int8)
  out = reference.add(a, b, qa.zero_point, qb.zero_point, qo.zero_point,
                      **reference.add_params(qa.scale, qb.scale, qo.scale))
  real = quant.dequantize(a, qa) + quant.dequantize(b, qb)
  ideal = np.clip(np.round(real / qo.scale) + qo.zero_point, -128, 127)
  assert np.abs(out.astype(np.int64) - ideal).max() <= 1
  x = np.array([[[[1], [2]], [[2], [2]]], [[[-1], [-2]], [[-2], [-2]]]],
               np.int8)                                  # sums 7 and -7 over 4
  np.testing.assert_array_equal(reference.global_avgpool(x)[:, 0], [2, -2])
  x = np.array([[[[1], [1]], [[0], [0]]]], np.int8)      # 0.5 rounds away
  assert reference.global_avgpool(x)[0, 0] == 1
