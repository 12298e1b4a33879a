"""Per-example gradient sanitization: clip each example's gradient, add noise.

GS-WGAN sanitizes the gradient of the generator loss with respect to each
generated sample (a [B, 28, 28, 1] tensor, one 784-vector per example):

* private (sigma > 0): each per-example vector is clipped to L2 norm at most
  `clip_norm` (C/B in GS-WGAN), then Gaussian noise with std
  `2 * sigma * clip_norm` is added to every coordinate (replace-one
  sensitivity of one clipped vector is 2 * clip_norm);
* non-private (sigma = 0): each per-example vector is rescaled to norm exactly
  `clip_norm` and no noise is added.

`sanitize_output` applies this inside back-propagation as a `jax.custom_vjp`
identity on the generator output, so the generator's own backward pass is
untouched: the only thing the generator ever receives from the discriminator
(and so from private data) is the sanitized [B, ...] cotangent.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

_TINY = 1e-12


def per_example_norms(g: jax.Array) -> jax.Array:
  """L2 norm of each example's slice of g [B, ...]. Returns [B]."""
  return jnp.sqrt(jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=-1))


def clip_per_example(g: jax.Array, clip_norm: float) -> jax.Array:
  """Scales each example's slice of `g` to norm min(norm, clip_norm).

  Guarantee: every per-example norm of the result is <= clip_norm (up to
  float rounding); `clip_norm = inf` returns `g` unchanged.
  """
  norms = per_example_norms(g)
  scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, _TINY))
  return g * scale.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype)


def normalize_per_example(g: jax.Array, norm: float) -> jax.Array:
  """Rescales each example's slice of `g` to L2 norm exactly `norm`.

  An all-zero slice stays zero (it has no direction).
  """
  norms = per_example_norms(g)
  scale = jnp.where(norms > _TINY, norm / jnp.maximum(norms, _TINY), 0.0)
  return g * scale.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype)


def sanitize(g: jax.Array, key: jax.Array, clip_norm: float,
             noise_multiplier: float) -> jax.Array:
  """Sanitizes per-example gradients g [B, ...].

  Args:
    g: per-example gradients, one slice per example along axis 0.
    key: PRNG key for the noise (unused when noise_multiplier == 0).
    clip_norm: per-example L2 bound (C/B in GS-WGAN).
    noise_multiplier: sigma; noise std per coordinate is
      2 * sigma * clip_norm. Zero selects the non-private rescaling.

  Returns:
    Private: clip(g) + N(0, (2 sigma clip_norm)^2) per coordinate.
    Non-private: each slice rescaled to norm exactly `clip_norm`.
  """
  if noise_multiplier == 0:
    return normalize_per_example(g, clip_norm)
  noise = jax.random.normal(key, g.shape, g.dtype)
  return clip_per_example(g, clip_norm) + (2.0 * noise_multiplier * clip_norm) * noise


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def sanitize_output(x: jax.Array, key: jax.Array, clip_norm: float,
                    noise_multiplier: float) -> jax.Array:
  """Identity on x [B, ...] whose backward pass sanitizes the cotangent.

  Because the discriminator treats examples independently, row i of the
  incoming cotangent is exactly the gradient of the loss with respect to
  example i; `sanitize` is applied to it per example. The key's cotangent is
  None (keys are not differentiable).
  """
  del key, clip_norm, noise_multiplier
  return x


def _fwd(x, key, clip_norm, noise_multiplier):
  del clip_norm, noise_multiplier
  return x, key


def _bwd(clip_norm, noise_multiplier, key, g):
  return sanitize(g, key, clip_norm, noise_multiplier), None


sanitize_output.defvjp(_fwd, _bwd)


# --- User-level sanitization (federated GS-WGAN and DP-FedAvg) ---------------


def user_upload_bound(batch_size: int, clip_norm: float) -> float:
  """Norm bound of one user's whole upload of `batch_size` per-sample
  gradients, each clipped to `clip_norm`: sqrt(batch_size) * clip_norm.
  It does not depend on how many records the user holds."""
  return math.sqrt(batch_size) * clip_norm


def sanitize_user_upload(g: jax.Array, key: jax.Array, clip_norm: float,
                         noise_multiplier: float) -> jax.Array:
  """A user's upload: per-sample gradients g [B, ...] on the user's device.

  Guarantees: each sample's slice is clipped to L2 norm <= clip_norm, so the
  clipped upload has norm <= S = sqrt(B) * clip_norm (`user_upload_bound`);
  Gaussian noise of std `noise_multiplier * S` is then added to every
  coordinate. With noise_multiplier = 0 nothing is added (non-private; the
  slices are still clipped, never rescaled upwards).
  """
  clipped = clip_per_example(g, clip_norm)
  if noise_multiplier == 0:
    return clipped
  std = noise_multiplier * user_upload_bound(g.shape[0], clip_norm)
  return clipped + std * jax.random.normal(key, g.shape, g.dtype)


def tree_norm(tree) -> jax.Array:
  """Global L2 norm of a pytree of arrays."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def sanitize_tree(tree, key: jax.Array, clip_norm: float, noise_multiplier: float):
  """DP-FedAvg update sanitization: the whole pytree is clipped to global L2
  norm <= clip_norm, then Gaussian noise of std noise_multiplier * clip_norm
  is added to every coordinate (no noise when noise_multiplier = 0)."""
  norm = tree_norm(tree)
  scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norm, _TINY))
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  out = []
  for x, k in zip(leaves, keys):
    y = x * scale.astype(x.dtype)
    if noise_multiplier:
      y = y + (noise_multiplier * clip_norm) * jax.random.normal(k, x.shape, x.dtype)
    out.append(y)
  return jax.tree.unflatten(treedef, out)
