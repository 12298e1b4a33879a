"""GS-WGAN networks: conditional generators (DCGAN, ResNet) and the critic.

All are flax.linen modules used functionally (init/apply). Spectral norm keeps
its power-iteration vector `u` in the "batch_stats" collection; pass
`update_stats=True` (with `mutable=["batch_stats"]`) to run the one power
iteration of a training forward pass and store the new `u`.

Images are [B, 28, 28, 1] in [0, 1]; labels are int32 [B].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtiny.nn import conv as conv_lib

LATENT_DIM = 10
NUM_CLASSES = 10


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Normalises each pixel's channel vector to unit RMS (channels last)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def sample_latent(key: jax.Array, batch: int, latent_dim: int = LATENT_DIM) -> jax.Array:
  """z ~ Bernoulli(0.5)^latent_dim as float32 [batch, latent_dim]."""
  return jax.random.bernoulli(key, 0.5, (batch, latent_dim)).astype(jnp.float32)


OUTPUTS = ("sigmoid", "hard_sigmoid")


def check_output(output: str) -> None:
  if output not in OUTPUTS:
    raise ValueError(f"generator_output={output!r}: use 'sigmoid' (the paper's) or "
                     "'hard_sigmoid' (relu6(h + 3) / 6: exactly 0 for h <= -3, so "
                     "backgrounds can be exactly black, as in real digits).")


def pixel_output(h: jax.Array, output: str) -> jax.Array:
  """Pixel values in [0, 1] from pre-activations: the paper's sigmoid, or a
  hard sigmoid, which reaches exactly 0 and 1 (with zero gradient there)."""
  if output == "sigmoid":
    return jax.nn.sigmoid(h)
  if output == "hard_sigmoid":
    return jax.nn.relu6(h + 3.0) / 6.0
  check_output(output)
  raise AssertionError(output)


def _sn(layer: nn.Module, enabled: bool = True):
  return nn.SpectralNorm(layer) if enabled else layer


class DCGANGenerator(nn.Module):
  """Linear(20->4096)->(4,4,256); deconv k5 ->128 (crop 7x7); deconv k5 ->64
  (11x11); deconv k8 s2 ->1 (28x28); ReLU + pixel-norm between; sigmoid out
  (or `output`, see `pixel_output`)."""
  num_classes: int = NUM_CLASSES
  dim: int = 64
  output: str = "sigmoid"

  @nn.compact
  def __call__(self, z, y, update_stats: bool = False):
    del update_stats  # No spectral norm in this generator.
    h = jnp.concatenate([z, jax.nn.one_hot(y, self.num_classes)], axis=-1)
    h = nn.Dense(4 * 4 * 4 * self.dim)(h)
    h = pixel_norm(nn.relu(h.reshape(-1, 4, 4, 4 * self.dim)))
    h = conv_lib.ConvTranspose(2 * self.dim, (5, 5))(h)[:, :7, :7]
    h = pixel_norm(nn.relu(h))
    h = conv_lib.ConvTranspose(self.dim, (5, 5))(h)
    h = pixel_norm(nn.relu(h))
    h = conv_lib.ConvTranspose(1, (8, 8), strides=(2, 2))(h)
    return pixel_output(h, self.output)


class _UpBlock(nn.Module):
  channels: int

  @nn.compact
  def __call__(self, x, update_stats: bool):
    up = lambda t: jnp.repeat(jnp.repeat(t, 2, axis=1), 2, axis=2)
    h = up(pixel_norm(x))
    h = nn.SpectralNorm(nn.Conv(self.channels, (3, 3)))(h, update_stats=update_stats)
    h = nn.relu(pixel_norm(h))
    h = nn.SpectralNorm(nn.Conv(self.channels, (3, 3)))(h, update_stats=update_stats)
    s = nn.SpectralNorm(nn.Conv(self.channels, (1, 1)))(up(x), update_stats=update_stats)
    return h + s


class ResNetGenerator(nn.Module):
  """SN-Linear(20->4*4*256)-ReLU-pixel-norm; three up-blocks to 32x32;
  SN-conv3x3 (no padding) to 1 channel, sigmoid, crop to 28x28."""
  num_classes: int = NUM_CLASSES
  channels: int = 256
  output: str = "sigmoid"

  @nn.compact
  def __call__(self, z, y, update_stats: bool = False):
    h = jnp.concatenate([z, jax.nn.one_hot(y, self.num_classes)], axis=-1)
    h = nn.SpectralNorm(nn.Dense(4 * 4 * self.channels))(h, update_stats=update_stats)
    h = pixel_norm(nn.relu(h.reshape(-1, 4, 4, self.channels)))
    for _ in range(3):
      h = _UpBlock(self.channels)(h, update_stats)
    h = nn.SpectralNorm(nn.Conv(1, (3, 3), padding="VALID"))(h, update_stats=update_stats)
    # 32x32 -> 30x30 after the valid conv; the centre 28x28 is the image.
    return pixel_output(h[:, 1:29, 1:29], self.output)


class Discriminator(nn.Module):
  """SN-conv 1->64->128->256 (k5 s2 pad 2, ReLU) -> 4096 -> SN-linear to 1,
  plus the projection term sum(embed(y) * h).

  As in the authors' implementation the class embedding is spectrally
  normalised too (its [10, 4096] matrix divided by its top singular value).
  Note flax's SpectralNorm stores every wrapped weight already divided by its
  first sigma estimate at init, so raw weights start with spectral norm ~1
  (PyTorch keeps the raw init, N(0, 1) for an embedding); the normalised
  weights agree, Adam's step relative to the raw weight does not.
  """
  num_classes: int = NUM_CLASSES
  dim: int = 64

  @nn.compact
  def __call__(self, x, y, update_stats: bool = False):
    h = x
    for mult in (1, 2, 4):
      conv = conv_lib.Conv(self.dim * mult, (5, 5), strides=(2, 2),
                           padding=((2, 2), (2, 2)))
      h = nn.relu(nn.SpectralNorm(conv)(h, update_stats=update_stats))
    h = h.reshape(h.shape[0], -1)  # [B, 4*4*4*dim]
    out = nn.SpectralNorm(nn.Dense(1))(h, update_stats=update_stats)[:, 0]
    embed = nn.SpectralNorm(nn.Embed(self.num_classes, h.shape[-1]))(
        y, update_stats=update_stats)
    return out + jnp.sum(embed * h, axis=-1)


def make_generator(name: str, output: str = "sigmoid") -> nn.Module:
  check_output(output)
  if name == "dcgan":
    return DCGANGenerator(output=output)
  if name == "resnet":
    return ResNetGenerator(output=output)
  raise ValueError(f"generator={name!r}: use 'dcgan' or 'resnet'.")
