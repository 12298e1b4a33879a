"""C kernels (through cffi) equal the integer reference bit for bit."""

import os

import numpy as np
import pytest

from jaxtiny.tinyengine import ckernels
from jaxtiny.tinyengine import quant
from jaxtiny.tinyengine import reference
from jaxtiny.tinyengine import vectors

pytestmark = pytest.mark.skipif(
    not ckernels.available() and not os.environ.get("CI"),
    reason="C kernels not built; run `make ckernels`")


_zp = vectors.random_zero_point
_act = vectors.random_act_range
_requant = vectors.random_requant


def _geometry(rng, kernels=(1, 2, 3, 4, 5, 7)):
  while True:
    n, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 13)), \
        int(rng.integers(1, 13))
    k, s = int(rng.choice(kernels)), int(rng.choice([1, 2]))
    pad = tuple(int(rng.integers(0, k)) for _ in range(4))
    if (reference.out_size(h, k, s, pad[0], pad[1]) >= 1 and
        reference.out_size(w, k, s, pad[2], pad[3]) >= 1):
      return n, h, w, k, s, pad


def test_conv_general_and_pointwise_bit_exact():
  rng = np.random.default_rng(0)
  cases = 0
  for t in range(300):
    n, h, w, k, s, pad = _geometry(rng)
    if t % 4 == 0:                   # Pointwise path.
      k, s, pad = 1, 1, (0, 0, 0, 0)
    cin, cout = int(rng.integers(1, 11)), int(rng.integers(1, 11))
    x = rng.integers(-128, 128, (n, h, w, cin), dtype=np.int8)
    wt = rng.integers(-127, 128, (cout, k, k, cin), dtype=np.int8)
    b = rng.integers(-30000, 30000, cout).astype(np.int32)
    m0, sh = _requant(rng, cout)
    zi, zo = _zp(rng), _zp(rng)
    lo, hi = _act(rng)
    want = reference.conv(x, wt, b, zi, zo, m0, sh, s, pad, lo, hi)
    for variant in ("plain", "4ch"):
      got = ckernels.conv(x, wt, b, zi, zo, m0, sh, s, pad, lo, hi,
                          variant=variant, tile=int(rng.integers(1, 6)))
      np.testing.assert_array_equal(got, want)
      cases += 1
  assert cases == 600


def test_depthwise_plain_unrolled_and_inplace_bit_exact():
  rng = np.random.default_rng(1)
  inplace = 0
  for t in range(300):
    n, h, w, k, s, pad = _geometry(rng, kernels=(1, 2, 3, 5, 7))
    if t % 3 == 0:                   # MCUNet's own shapes: same padding.
      k = int(rng.choice([3, 5, 7]))
      h, w = max(h, k), max(w, k)
      pad = reference.same_padding(k)
    c = int(rng.integers(1, 80))       # Crosses the 64-channel block.
    x = rng.integers(-128, 128, (n, h, w, c), dtype=np.int8)
    wt = rng.integers(-127, 128, (k, k, c), dtype=np.int8)
    b = rng.integers(-30000, 30000, c).astype(np.int32)
    m0, sh = _requant(rng, c)
    zi, zo = _zp(rng), _zp(rng)
    lo, hi = _act(rng)
    want = reference.depthwise_conv(x, wt, b, zi, zo, m0, sh, s, pad, lo, hi)
    for variant in ("plain", "unrolled"):
      np.testing.assert_array_equal(
          ckernels.depthwise_conv(x, wt, b, zi, zo, m0, sh, s, pad, lo, hi,
                                  variant=variant), want)
    if want.shape[1] * want.shape[2] <= h * w:
      np.testing.assert_array_equal(
          ckernels.depthwise_conv(x, wt, b, zi, zo, m0, sh, s, pad, lo, hi,
                                  variant="inplace"), want)
      inplace += 1
  assert inplace > 200


def test_fully_connected_avgpool_add_bit_exact():
  rng = np.random.default_rng(2)
  for _ in range(200):
    n, i, o = int(rng.integers(1, 4)), int(rng.integers(1, 300)), \
        int(rng.integers(1, 20))
    x = rng.integers(-128, 128, (n, i), dtype=np.int8)
    wt = rng.integers(-127, 128, (o, i), dtype=np.int8)
    b = rng.integers(-30000, 30000, o).astype(np.int32)
    m0, sh = _requant(rng, o)
    zi, zo = _zp(rng), _zp(rng)
    lo, hi = _act(rng)
    np.testing.assert_array_equal(
        ckernels.fully_connected(x, wt, b, zi, zo, m0, sh, lo, hi),
        reference.fully_connected(x, wt, b, zi, zo, m0, sh, lo, hi))
    shape = (n, int(rng.integers(1, 9)), int(rng.integers(1, 9)),
             int(rng.integers(1, 17)))
    a = rng.integers(-128, 128, shape, dtype=np.int8)
    np.testing.assert_array_equal(ckernels.global_avgpool(a, lo, hi),
                                  reference.global_avgpool(a, lo, hi))
    bb = rng.integers(-128, 128, shape, dtype=np.int8)
    scales = np.exp(rng.uniform(np.log(1e-3), np.log(1.0), 3))
    params = reference.add_params(*scales)
    za, zb = _zp(rng), _zp(rng)
    np.testing.assert_array_equal(
        ckernels.add(a, bb, za, zb, zo, **params, act_min=lo, act_max=hi),
        reference.add(a, bb, za, zb, zo, **params, act_min=lo, act_max=hi))


def test_saturation_at_int8_bounds():
  x = np.full((1, 3, 3, 4), 127, np.int8)
  w = np.full((2, 3, 3, 4), 127, np.int8)
  b = np.zeros(2, np.int32)
  m0, sh = quant.quantize_multipliers(np.array([1.0, 1.0]))
  out = ckernels.conv(x, w, b, -128, 0, m0, sh, 1, (1, 1, 1, 1))
  assert np.all(out == 127)
  out = ckernels.conv(x, -w, b, -128, 0, m0, sh, 1, (1, 1, 1, 1))
  assert np.all(out == -128)


@pytest.mark.parametrize("call, needle", [
    (lambda x, w, b, m, s: ckernels.conv(x.astype(np.int16), w, b, 0, 0, m, s,
                                         1, (1, 1, 1, 1)), "x must be int8"),
    (lambda x, w, b, m, s: ckernels.conv(np.ascontiguousarray(x[..., :2]), w,
                                         b, 0, 0, m, s, 1, (1, 1, 1, 1)),
     "filter has 3 input channels, input has 2"),
    (lambda x, w, b, m, s: ckernels.conv(x[:, ::2], w, b, 0, 0, m, s, 1,
                                         (1, 1, 1, 1)), "C-contiguous"),
    (lambda x, w, b, m, s: ckernels.conv(x, w, b, 300, 0, m, s, 1,
                                         (1, 1, 1, 1)), "zp_in must be in"),
    (lambda x, w, b, m, s: ckernels.conv(x, w, b, 0, 0, m, s, 1,
                                         (3, 1, 1, 1)), "smaller than the"),
    (lambda x, w, b, m, s: ckernels.conv(x, w, b, 0, 0, m, s + 40, 1,
                                         (1, 1, 1, 1)), "shift must be in"),
    (lambda x, w, b, m, s: ckernels.conv(x, w, b[:1], 0, 0, m, s, 1,
                                         (1, 1, 1, 1)), "bias needs 2"),
    (lambda x, w, b, m, s: ckernels.conv(x, w, b, 0, 0, m, s, 1, (1, 1, 1, 1),
                                         act_min=5, act_max=1),
     "act_min 5 > act_max 1"),
    (lambda x, w, b, m, s: ckernels.depthwise_conv(x, w[0], b, 0, 0, m, s, 1,
                                                   (1, 1, 1, 1)),
     "channel counts differ"),
])
def test_bad_arguments_raise_before_c(call, needle):
  rng = np.random.default_rng(3)
  x = rng.integers(-128, 128, (1, 6, 6, 3), dtype=np.int8)
  w = rng.integers(-127, 128, (2, 3, 3, 3), dtype=np.int8)
  b = np.zeros(2, np.int32)
  m0, sh = quant.quantize_multipliers(np.array([0.01, 0.02]))
  with pytest.raises(ckernels.KernelArgumentError, match=needle):
    call(x, w, b, m0, sh)


def test_c_side_checks_return_status_instead_of_crashing():
  lib, ffi = ckernels._lib()  # pylint: disable=protected-access
  dims = ffi.new("tk_dims *")
  dims.n, dims.h, dims.w, dims.c = 1, 4, 4, 2
  p = ffi.new("tk_conv_params *")
  p.stride, p.act_min, p.act_max = 1, -128, 127
  q = ffi.new("tk_requant *")
  # Null pointers everywhere.
  assert lib.tk_depthwise_conv_s8(p, q, dims, ffi.NULL, dims, ffi.NULL,
                                  ffi.NULL, dims, ffi.NULL) == -1
  assert lib.tk_avgpool_s8(ffi.NULL, ffi.NULL, -128, 127, ffi.NULL) == -1
  # A bad activation range with valid buffers.
  x = np.zeros((1, 4, 4, 2), np.int8)
  out = np.zeros((1, 2), np.int8)
  i8 = lambda a: ffi.cast("int8_t *", ffi.from_buffer(a))  # noqa: E731
  assert lib.tk_avgpool_s8(dims, i8(x), 5, 1, i8(out)) == -1
  # Too little scratch for the im2col tile.
  filt = ffi.new("tk_dims *")
  filt.n, filt.h, filt.w, filt.c = 2, 3, 3, 2
  m0 = np.full(2, 1 << 30, np.int32)
  sh = np.zeros(2, np.int32)
  q.multiplier = ffi.cast("const int32_t *", ffi.from_buffer(m0))
  q.shift = ffi.cast("const int32_t *", ffi.from_buffer(sh))
  p.pad_top = p.pad_left = 1
  w = np.zeros((2, 3, 3, 2), np.int8)
  b = np.zeros(2, np.int32)
  y = np.zeros((1, 4, 4, 2), np.int8)
  scratch = np.zeros(18, np.int16)        # One 3x3x2 column: 36 bytes.
  args = (p, q, dims, i8(x), filt, i8(w),
          ffi.cast("int32_t *", ffi.from_buffer(b)), dims, i8(y),
          ffi.cast("int16_t *", ffi.from_buffer(scratch)))
  assert lib.tk_convolve_s8(*args, 8) == -2
  assert lib.tk_convolve_s8(*args, 2 * 18) == 0      # One-pixel tile is enough.
