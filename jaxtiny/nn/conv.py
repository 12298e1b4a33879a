"""2-D convolution and its transpose, with gradients that are fast on CPU.

XLA's CPU backend runs the input gradient of a strided convolution (and any
transposed convolution) as a convolution with `lhs_dilation` or wide padding,
several times slower than the forward convolution. Here the two linear maps

  conv2d(x, w):         x [B, n, n, I] -> y [B, m, m, O]   (stride s, padding p)
  conv2d_transpose(y, w): y [B, m, m, O] -> x [B, n, n, I]   (its exact adjoint)

are each a `jax.custom_vjp` whose backward pass is written with the other one:
d/dx conv2d = conv2d_transpose, d/dy conv2d_transpose = conv2d, and both weight
gradients are XLA's (fast) weight gradient of the forward convolution. The
transpose itself is computed by sub-pixel decomposition: for stride s it splits
into s*s stride-1 convolutions with the sub-kernels w[a::s, b::s], whose
outputs interleave, so no multiply is spent on the zeros a dilated gradient
would hold. Because the backward rules are built from these same functions,
reverse-over-reverse differentiation (the WGAN-GP penalty) stays on the fast
paths too.

Layouts: NHWC activations, HWIO kernels (kernel [kh, kw, I, O] maps I -> O).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]
Strides = tuple[int, int]


def conv2d_reference(x: jax.Array, w: jax.Array, strides: Strides,
                     padding: Padding) -> jax.Array:
  """Plain XLA convolution: x [B, H, W, I], w [kh, kw, I, O] -> [B, H', W', O]."""
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_DN)


def _weight_grad(x: jax.Array, g: jax.Array, w_shape: Sequence[int],
                 strides: Strides, padding: Padding) -> jax.Array:
  """d<conv2d(x, w), g>/dw: XLA's own weight gradient (fast on CPU)."""
  w0 = jnp.zeros(w_shape, x.dtype)
  _, vjp = jax.vjp(lambda w_: conv2d_reference(x, w_, strides, padding), w0)
  return vjp(g)[0]


def _transpose_scatter(y: jax.Array, w: jax.Array, x_hw: Sequence[int],
                       strides: Strides, padding: Padding) -> jax.Array:
  """Adjoint of conv2d as one matmul plus col2im.

  Every input position of y contributes the patch y[b, h, w, :] @ w[kh, kw]^T
  to x[b, h*s + kh - lo, w*s + kw - lo]: a dense [B*m*m, O] x [O, k*k*I]
  matmul, then k*k shifted (zero-interleaved) adds. No multiply touches a
  padding zero, which wins when the input y is small (GAN generators).
  """
  batch, m_h, m_w, c_out = y.shape
  k_h, k_w, c_in, _ = w.shape
  (s_h, s_w), ((lo_h, _), (lo_w, _)) = strides, padding
  n_h, n_w = x_hw
  full_h, full_w = (m_h - 1) * s_h + k_h, (m_w - 1) * s_w + k_w
  patches = jnp.dot(y.reshape(-1, c_out),
                    w.transpose(3, 0, 1, 2).reshape(c_out, -1))
  patches = patches.reshape(batch, m_h, m_w, k_h, k_w, c_in)
  zero = jnp.zeros((), y.dtype)
  out = None
  for i in range(k_h):
    for j in range(k_w):
      part = lax.pad(patches[:, :, :, i, j], zero,
                     ((0, 0, 0), (i, k_h - 1 - i, s_h - 1),
                      (j, k_w - 1 - j, s_w - 1), (0, 0, 0)))
      out = part if out is None else out + part
  # out covers t = h*s + k in [0, full); x[i] is t = i + lo.
  out = lax.pad(out, zero, ((0, 0, 0), (-lo_h, n_h + lo_h - full_h, 0),
                            (-lo_w, n_w + lo_w - full_w, 0), (0, 0, 0)))
  return out


def _transpose_impl(y: jax.Array, w: jax.Array, x_hw: Sequence[int],
                    strides: Strides, padding: Padding) -> jax.Array:
  """Adjoint of conv2d: scatter form for small y, sub-pixel form otherwise."""
  q_h = math.ceil((padding[0][0] + x_hw[0]) / strides[0])
  q_w = math.ceil((padding[1][0] + x_hw[1]) / strides[1])
  if y.shape[1] * y.shape[2] < q_h * q_w:
    return _transpose_scatter(y, w, x_hw, strides, padding)
  return _transpose_subpixel(y, w, x_hw, strides, padding)


def _transpose_subpixel(y: jax.Array, w: jax.Array, x_hw: Sequence[int],
                        strides: Strides, padding: Padding) -> jax.Array:
  """Adjoint of conv2d by sub-pixel decomposition.

  In 1-D, with t = i + lo = q*s + a (0 <= a < s):
    x[i] = sum_j y[q - j] * w[a + j*s],
  a stride-1 "full" convolution of y with the sub-kernel w[a::s] for each
  phase a. The phases are computed for q in [0, Q), interleaved into
  t in [0, Q*s) and cropped to t in [lo, lo + n).
  """
  batch, m_h, m_w, _ = y.shape
  k_h, k_w, c_in, _ = w.shape
  (s_h, s_w), ((lo_h, _), (lo_w, _)) = strides, padding
  n_h, n_w = x_hw
  q_h, q_w = math.ceil((lo_h + n_h) / s_h), math.ceil((lo_w + n_w) / s_w)
  rows = []
  for a in range(s_h):
    cols = []
    for b in range(s_w):
      sub = w[a::s_h, b::s_w]  # [ka, kb, I, O]
      ka, kb = sub.shape[:2]
      if ka == 0 or kb == 0:
        cols.append(jnp.zeros((batch, q_h, q_w, c_in), y.dtype))
        continue
      sub = jnp.flip(sub, (0, 1)).swapaxes(2, 3)  # [ka, kb, O, I]
      # Explicit padding (negative crops) kept out of the convolution by an
      # optimization barrier: XLA:CPU is several times slower when it folds
      # wide padding into the convolution itself.
      y_pad = lax.optimization_barrier(lax.pad(
          y, jnp.zeros((), y.dtype),
          ((0, 0, 0), (ka - 1, q_h - m_h, 0), (kb - 1, q_w - m_w, 0), (0, 0, 0))))
      out = lax.conv_general_dilated(y_pad, sub, (1, 1), "VALID",
                                     dimension_numbers=_DN)
      cols.append(out)  # [B, q_h, q_w, I]
    rows.append(jnp.stack(cols, axis=3))  # [B, q_h, q_w, s_w, I]
  full = jnp.stack(rows, axis=2)  # [B, q_h, s_h, q_w, s_w, I]
  full = full.reshape(batch, q_h * s_h, q_w * s_w, c_in)
  return full[:, lo_h:lo_h + n_h, lo_w:lo_w + n_w]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, w: jax.Array, strides: Strides, padding: Padding) -> jax.Array:
  """Same values as `conv2d_reference`; fast first and second derivatives."""
  return conv2d_reference(x, w, strides, padding)


def _conv_fwd(x, w, strides, padding):
  return conv2d_reference(x, w, strides, padding), (x, w)


def _conv_bwd(strides, padding, res, g):
  x, w = res
  dx = conv2d_transpose(g, w, tuple(x.shape[1:3]), strides, padding)
  return dx, _weight_grad(x, g, w.shape, strides, padding)


conv2d.defvjp(_conv_fwd, _conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_transpose(y: jax.Array, w: jax.Array, x_hw: tuple[int, int],
                     strides: Strides, padding: Padding) -> jax.Array:
  """Adjoint of `conv2d(., w, strides, padding)` for inputs of size x_hw.

  y [B, m, m, O], w [kh, kw, I, O] -> [B, x_hw[0], x_hw[1], I]. With zero
  padding and x_hw = ((m - 1) * s + k) this is the usual transposed ("deconv")
  layer mapping O channels to I channels.
  """
  return _transpose_impl(y, w, x_hw, strides, padding)


def _t_fwd(y, w, x_hw, strides, padding):
  return _transpose_impl(y, w, x_hw, strides, padding), (y, w)


def _t_bwd(x_hw, strides, padding, res, ct):
  y, w = res
  dy = conv2d(ct, w, strides, padding)
  # <conv2d_transpose(y, w), ct> = <y, conv2d(ct, w)>, so dw = weight grad of
  # conv2d at input ct and output cotangent y.
  return dy, _weight_grad(ct, y, w.shape, strides, padding)


conv2d_transpose.defvjp(_t_fwd, _t_bwd)


def _pairs(padding) -> Padding:
  return tuple(tuple(int(v) for v in p) for p in padding)


class Conv(nn.Module):
  """NHWC convolution layer (kernel HWIO + bias) using `conv2d`.

  Parameter names match flax's `nn.Conv` ("kernel", "bias") so wrappers such as
  `nn.SpectralNorm` apply unchanged.
  """
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Padding = ((0, 0), (0, 0))
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        tuple(self.kernel_size) + (x.shape[-1], self.features))
    y = conv2d(x, kernel, tuple(self.strides), _pairs(self.padding))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y


class ConvTranspose(nn.Module):
  """Transposed convolution ("deconv", no padding): [B, m, m, C] ->
  [B, (m - 1) * s + k, ..., features], the adjoint of a strided VALID conv.

  The kernel is stored [kh, kw, features, C] (the forward conv it transposes
  maps features -> C).
  """
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  use_bias: bool = True

  @nn.compact
  def __call__(self, y):
    k_h, k_w = self.kernel_size
    s_h, s_w = self.strides
    # fan_in of a transposed conv is in_channels * k*k / (s*s) per output; the
    # "in" axis of this kernel layout is axis 3.
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal",
                                            in_axis=(0, 1, 3), out_axis=2)
    kernel = self.param("kernel", init, (k_h, k_w, self.features, y.shape[-1]))
    out_hw = ((y.shape[1] - 1) * s_h + k_h, (y.shape[2] - 1) * s_w + k_w)
    x = conv2d_transpose(y, kernel, out_hw, (s_h, s_w), ((0, 0), (0, 0)))
    if self.use_bias:
      x = x + self.param("bias", nn.initializers.zeros, (self.features,))
    return x


# ----------------------------------------------------------------- depthwise

def _shift_correlate(xp: jax.Array, w: jax.Array, stride: int, out_h: int,
                     out_w: int) -> jax.Array:
  """sum_{i,j} xp[:, a*s+i, b*s+j, :] * w[i, j, 0, :] as k*k fused
  multiply-adds of strided slices (XLA's CPU grouped convolution is 10x
  slower than this for depthwise filters)."""
  n, _, _, c = xp.shape
  k = w.shape[0]
  out = None
  for i in range(k):
    for j in range(w.shape[1]):
      sl = lax.slice(xp, (0, i, j, 0),
                     (n, i + (out_h - 1) * stride + 1,
                      j + (out_w - 1) * stride + 1, c),
                     (1, stride, stride, 1))
      term = sl * w[i, j, 0]
      out = term if out is None else out + term
  return out


def _same_pad(x: jax.Array, p: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))


# Bytes of (padded input + output gradient) one chunk of the filter gradient
# reads: small enough to stay in a core's L2 cache across all k*k taps.
_FILTER_GRAD_CHUNK_BYTES = 512 * 1024


def _filter_grad_taps(xp: jax.Array, g: jax.Array, k: int, stride: int
                      ) -> jax.Array:
  """[k*k, C]: sum over (n, a, b) of xp[n, a*s+i, b*s+j, :] * g[n, a, b, :]."""
  n, ho, wo, c = g.shape
  taps = []
  for i in range(k):
    for j in range(k):
      sl = lax.slice(xp, (0, i, j, 0),
                     (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1,
                      c), (1, stride, stride, 1))
      taps.append(jnp.sum(sl * g, axis=(0, 1, 2)))
  return jnp.stack(taps)


def _filter_grad(xp: jax.Array, g: jax.Array, k: int, stride: int
                 ) -> jax.Array:
  """The depthwise filter gradient [k*k, C], accumulated over batch chunks.

  Done in one pass, each of the k*k tap reductions streams the whole
  activation from memory (k*k passes; memory-bound, ~6x slower on CPU for
  7x7 filters); a scan over chunks of a few images keeps each chunk in cache
  while every tap reads it.
  """
  n = g.shape[0]
  per_image = (xp[0].size + g[0].size) * xp.dtype.itemsize
  chunk = max(1, min(n, _FILTER_GRAD_CHUNK_BYTES // max(per_image, 1)))
  while n % chunk:
    chunk -= 1
  if chunk == n:
    return _filter_grad_taps(xp, g, k, stride)
  xs = xp.reshape((n // chunk, chunk) + xp.shape[1:])
  gs = g.reshape((n // chunk, chunk) + g.shape[1:])

  def body(acc, xg):
    return acc + _filter_grad_taps(xg[0], xg[1], k, stride), None

  acc, _ = lax.scan(body, jnp.zeros((k * k, g.shape[-1]), g.dtype), (xs, gs))
  return acc


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv2d(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
  """Depthwise 'same' convolution (padding k // 2) for odd square kernels.

  Args:
    x: [B, H, W, C] activations.
    w: [k, k, 1, C] filters (HWIO with feature_group_count = C).
    stride: spatial stride.
  Returns:
    [B, Ho, Wo, C] with Ho = (H + 2 (k // 2) - k) // stride + 1; equal to
    `lax.conv_general_dilated(..., feature_group_count=C)`.
  """
  return _dw_fwd(x, w, stride)[0]


def _dw_fwd(x, w, stride):
  k = w.shape[0]
  p = k // 2
  _, h, wd, _ = x.shape
  ho, wo = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
  return _shift_correlate(_same_pad(x, p), w, stride, ho, wo), (x, w)


def _dw_bwd(stride, res, g):
  x, w = res
  k = w.shape[0]
  p = k // 2
  n, h, wd, c = x.shape
  _, ho, wo, _ = g.shape
  # Input gradient: the full correlation of the stride-dilated g with the
  # flipped kernel, cropped back to the unpadded input.
  extra_h = (h + 2 * p) - ((ho - 1) * stride + k)
  extra_w = (wd + 2 * p) - ((wo - 1) * stride + k)
  gp = lax.pad(g, jnp.zeros((), g.dtype),
               ((0, 0, 0), (k - 1, k - 1 + extra_h, stride - 1),
                (k - 1, k - 1 + extra_w, stride - 1), (0, 0, 0)))
  dxp = _shift_correlate(gp, w[::-1, ::-1], 1, h + 2 * p, wd + 2 * p)
  dx = dxp[:, p:p + h, p:p + wd]
  dw = _filter_grad(_same_pad(x, p), g, k, stride).reshape(k, k, 1, c)
  return dx.astype(x.dtype), dw.astype(w.dtype)


depthwise_conv2d.defvjp(_dw_fwd, _dw_bwd)
