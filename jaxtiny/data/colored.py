"""Colored MNIST (Chen et al. 2020): one colour value per image, spurious in
the source domain and independent of the label in the target domain.

An image x in [0, 1]^(28x28) with colour c in [0, 1] becomes the two-channel
image [x c, x (1 - c)] (28x28x2). Colours are kept as one float per image and
the two channels are formed on the fly (`colorize`), so many seeds' colourings
of the same images cost one array of images.

CMNIST10 (10 classes): in the source, with probability p the colour is
uniform in the class's band [y/10, (y+1)/10), otherwise uniform in [0, 1); in
the target, uniform in [0, 1).
CMNIST2 (y = 1[digit < 5]): target colour ~ N(0.5, (1/6)^2); source colour
0.5 + |c - 0.5| sign(y - 0.5) with probability p, else c (c from the target
distribution).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def binary_labels(digits):
  """CMNIST2 labels: 1 for digits 0-4, 0 for 5-9."""
  return (digits < 5).astype(jnp.int32)


def colours(key, labels, *, num_classes: int, domain: str, p: float = 0.95):
  """One colour per image [N] (float32 in [0, 1] for CMNIST10).

  Args:
    key: PRNG key.
    labels: int labels [N] (digits for num_classes=10, binary for 2).
    num_classes: 10 (CMNIST10) or 2 (CMNIST2).
    domain: "source" (colour correlated with the label with probability p)
      or "target" (independent of the label).
    p: the source correlation probability.
  """
  if domain not in ("source", "target"):
    raise ValueError(f"domain must be 'source' or 'target', got {domain!r}")
  k_u, k_band, k_pick = jax.random.split(key, 3)
  n = labels.shape[0]
  pick = jax.random.bernoulli(k_pick, p, (n,)) if domain == "source" else jnp.zeros(n, bool)
  if num_classes == 10:
    free = jax.random.uniform(k_u, (n,))
    band = (labels + jax.random.uniform(k_band, (n,))) / 10.0
    return jnp.where(pick, band, free)
  if num_classes == 2:
    c = 0.5 + jax.random.normal(k_u, (n,)) / 6.0
    tied = 0.5 + jnp.abs(c - 0.5) * jnp.where(labels > 0, 1.0, -1.0)
    return jnp.where(pick, tied, c)
  raise ValueError(f"num_classes must be 10 or 2, got {num_classes}")


def colorize(images, colour):
  """[N, 28, 28(, 1)] in [0, 1] and colours [N] -> [N, 28, 28, 2]."""
  x = images.reshape(images.shape[0], 28, 28, 1)
  c = colour.reshape(-1, 1, 1, 1)
  return jnp.concatenate([x * c, x * (1.0 - c)], axis=-1)
