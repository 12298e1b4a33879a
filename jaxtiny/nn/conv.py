"""2-D convolution with a faster input gradient for strided convs on CPU.

XLA's CPU backend computes the input gradient of a strided convolution as a
convolution with `lhs_dilation`, which is several times slower than
materialising the zero-dilated upstream gradient and running a plain stride-1
convolution with the flipped kernel. `conv2d` does the latter in a
`jax.custom_vjp`; the weight gradient is XLA's own. The backward rule is made of
ordinary JAX ops, so reverse-over-reverse differentiation (needed by the
WGAN-GP penalty) works.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]


def conv2d_reference(x: jax.Array, w: jax.Array, strides: tuple[int, int],
                     padding: Padding) -> jax.Array:
  """Plain XLA convolution: x [B, H, W, I], w [kh, kw, I, O] -> [B, H', W', O]."""
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, w: jax.Array, strides: tuple[int, int],
           padding: Padding) -> jax.Array:
  """Same values as `conv2d_reference`, with a faster input gradient."""
  return conv2d_reference(x, w, strides, padding)


def _fwd(x, w, strides, padding):
  return conv2d_reference(x, w, strides, padding), (x, w)


def input_gradient(g: jax.Array, w: jax.Array, x_shape: Sequence[int],
                   strides: tuple[int, int], padding: Padding) -> jax.Array:
  """d(conv)/dx applied to the output cotangent `g` [B, H', W', O].

  dx[i] = sum_k gd[i + lo - k] w[k], where gd is `g` with (s - 1) zeros
  between neighbouring positions: a VALID stride-1 correlation of gd, padded
  by (k - 1 - lo) in front and whatever makes the length come out to the input
  size at the back (negative: cropped), with the spatially flipped kernel.
  """
  config = [(0, 0, 0)]
  for dim, (lo, _) in enumerate(padding):
    k, n, m, s = w.shape[dim], x_shape[1 + dim], g.shape[1 + dim], strides[dim]
    dilated = (m - 1) * s + 1
    front = k - 1 - lo
    config.append((front, n + k - 1 - dilated - front, s - 1))
  config.append((0, 0, 0))
  gd = lax.pad(g, jnp.zeros((), g.dtype), config)
  w_flipped = jnp.flip(w, (0, 1)).swapaxes(2, 3)  # [kh, kw, O, I]
  return lax.conv_general_dilated(gd, w_flipped, (1, 1), "VALID",
                                  dimension_numbers=_DN)


def _bwd(strides, padding, res, g):
  x, w = res
  dx = input_gradient(g, w, x.shape, strides, padding)
  _, w_vjp = jax.vjp(lambda w_: conv2d_reference(x, w_, strides, padding), w)
  return dx, w_vjp(g)[0]


conv2d.defvjp(_fwd, _bwd)


class Conv(nn.Module):
  """NHWC convolution layer (kernel HWIO + bias) using `conv2d`.

  Attribute names match flax's `nn.Conv` ("kernel", "bias") so wrappers such as
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
    y = conv2d(x, kernel, tuple(self.strides),
               tuple(tuple(p) for p in self.padding))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y
