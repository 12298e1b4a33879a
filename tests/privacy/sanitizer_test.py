"""Every guarantee in jaxtiny.privacy.sanitizer's docstrings."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtiny.privacy import sanitizer


def _grads(seed, batch=64, shape=(28, 28, 1)):
  rng = np.random.default_rng(seed)
  scales = 10.0 ** rng.uniform(-6, 3, size=(batch, 1, 1, 1))
  g = rng.normal(size=(batch,) + shape) * scales
  g[0] = 0.0  # An all-zero example.
  return jnp.asarray(g, jnp.float32)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bound", [1.0 / 32, 0.5, 7.0])
def test_clipped_norms_never_exceed_bound(seed, bound):
  g = _grads(seed)
  norms = sanitizer.per_example_norms(sanitizer.clip_per_example(g, bound))
  assert float(jnp.max(norms)) <= bound * (1 + 1e-6)
  # Examples already inside the bound are untouched.
  inside = sanitizer.per_example_norms(g) < bound
  np.testing.assert_array_equal(np.asarray(sanitizer.clip_per_example(g, bound))[inside],
                                np.asarray(g)[inside])


def test_infinite_bound_is_a_no_op():
  g = _grads(0)
  np.testing.assert_array_equal(sanitizer.clip_per_example(g, np.inf), g)


@pytest.mark.parametrize("seed", range(3))
def test_sigma_zero_rescales_to_exactly_the_bound(seed):
  g = _grads(seed)
  out = sanitizer.sanitize(g, jax.random.key(0), 1.0 / 32, 0.0)
  norms = np.asarray(sanitizer.per_example_norms(out))
  np.testing.assert_allclose(norms[1:], 1.0 / 32, rtol=1e-5)
  assert norms[0] == 0.0  # No direction to rescale.
  # Directions are preserved.
  cos = jnp.sum(out[1:] * g[1:], axis=(1, 2, 3)) / (
      sanitizer.per_example_norms(out[1:]) * sanitizer.per_example_norms(g[1:]))
  np.testing.assert_allclose(cos, 1.0, rtol=1e-5)


def test_noise_std_matches_2_sigma_bound():
  sigma, bound = 1.07, 1.0 / 32
  g = jnp.zeros((200, 28, 28, 1))  # 156,800 noise coordinates.
  out = np.asarray(sanitizer.sanitize(g, jax.random.key(3), bound, sigma))
  expected = 2 * sigma * bound
  n = out.size
  # The sample std of n normals has relative standard error ~ 1/sqrt(2n) = 0.18%.
  assert abs(out.std() / expected - 1) < 6 / np.sqrt(2 * n)
  assert abs(out.mean()) < 6 * expected / np.sqrt(n)


def test_private_output_is_clip_plus_noise_with_that_key():
  g = _grads(1)
  key = jax.random.key(5)
  out = sanitizer.sanitize(g, key, 0.1, 2.0)
  noise = jax.random.normal(key, g.shape, g.dtype) * (2 * 2.0 * 0.1)
  np.testing.assert_allclose(out, sanitizer.clip_per_example(g, 0.1) + noise, rtol=1e-6)


def test_sanitize_output_is_identity_forward_and_sanitizes_backward():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 5)), jnp.float32)
  w = jnp.asarray(np.random.default_rng(1).normal(size=(8, 5)) * 100, jnp.float32)
  key = jax.random.key(9)
  np.testing.assert_array_equal(sanitizer.sanitize_output(x, key, 0.5, 1.0), x)
  grad = jax.grad(lambda x: jnp.sum(sanitizer.sanitize_output(x, key, 0.5, 1.0) * w))(x)
  np.testing.assert_allclose(grad, sanitizer.sanitize(w, key, 0.5, 1.0), rtol=1e-6)
  grad0 = jax.grad(lambda x: jnp.sum(sanitizer.sanitize_output(x, key, 0.5, 0.0) * w))(x)
  np.testing.assert_allclose(sanitizer.per_example_norms(grad0), 0.5, rtol=1e-5)


# --- User-level uploads (federated) ------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_user_upload_is_bounded_per_sample_and_in_total(seed):
  g = _grads(seed, batch=32)
  c = 1.0 / 32
  out = sanitizer.sanitize_user_upload(g, jax.random.key(0), c, 0.0)
  assert float(jnp.max(sanitizer.per_example_norms(out))) <= c * (1 + 1e-6)
  total = float(jnp.linalg.norm(out.reshape(-1)))
  assert total <= sanitizer.user_upload_bound(32, c) * (1 + 1e-6)
  assert sanitizer.user_upload_bound(32, c) == pytest.approx(math.sqrt(32) / 32)


def test_user_upload_noise_std_is_sigma_times_the_upload_bound():
  g = jnp.zeros((32, 28, 28, 1))
  c, sigma = 1.0 / 32, 1.3
  out = np.asarray(sanitizer.sanitize_user_upload(g, jax.random.key(1), c, sigma))
  expected = sigma * math.sqrt(32) * c
  n = out.size  # 25,088 draws: the sample std is within ~2% (5 standard errors).
  assert abs(out.std() / expected - 1) < 5 / math.sqrt(2 * n)
  assert abs(out.mean()) < 5 * expected / math.sqrt(n)


def test_sanitize_tree_clips_the_global_norm_and_adds_noise():
  rng = np.random.default_rng(0)
  tree = {"a": jnp.asarray(rng.normal(size=(300, 40)) * 5, jnp.float32),
          "b": [jnp.asarray(rng.normal(size=(1000,)), jnp.float32)]}
  clipped = sanitizer.sanitize_tree(tree, jax.random.key(0), 0.1, 0.0)
  assert float(sanitizer.tree_norm(clipped)) == pytest.approx(0.1, rel=1e-5)
  small = jax.tree.map(lambda x: x * 1e-6, tree)  # Inside the bound: unchanged.
  for got, want in zip(jax.tree.leaves(sanitizer.sanitize_tree(
      small, jax.random.key(0), 0.1, 0.0)), jax.tree.leaves(small)):
    np.testing.assert_allclose(got, want, rtol=1e-6)
  noisy = sanitizer.sanitize_tree(tree, jax.random.key(2), 0.1, 2.0)
  diff = np.concatenate([np.ravel(np.asarray(n) - np.asarray(c)) for n, c in zip(
      jax.tree.leaves(noisy), jax.tree.leaves(clipped))])
  assert abs(diff.std() / 0.2 - 1) < 5 / math.sqrt(2 * diff.size)
