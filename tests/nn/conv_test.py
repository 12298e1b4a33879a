"""conv2d / conv2d_transpose against XLA, first and second derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtiny.nn import conv

# (input size, kernel, stride, padding (lo, hi), in channels, out channels)
CASES = [(28, 5, 2, (2, 2), 1, 4), (14, 5, 2, (2, 2), 3, 5), (7, 5, 2, (2, 2), 4, 6),
         (9, 3, 1, (1, 1), 3, 4), (10, 3, 2, (0, 0), 2, 3), (8, 4, 2, (1, 1), 2, 2),
         (11, 5, 3, (1, 1), 2, 2), (11, 2, 3, (0, 0), 2, 2), (12, 3, 2, (0, 1), 2, 3),
         (8, 5, 1, (0, 0), 3, 2)]


@pytest.fixture(autouse=True)
def float64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


def _data(n, k, s, p, ci, co, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(2, n, n, ci)))
  w = jnp.asarray(rng.normal(size=(k, k, ci, co)))
  pad = (p, p)
  y = jnp.asarray(rng.normal(size=conv.conv2d_reference(x, w, (s, s), pad).shape))
  return x, w, y, pad


def _close(a, b, tol=1e-12):
  a, b = np.asarray(a), np.asarray(b)
  assert np.abs(a - b).max() <= tol * (np.abs(b).max() + 1e-30), np.abs(a - b).max()


@pytest.mark.parametrize("case", CASES)
def test_both_transpose_forms_are_the_adjoint(case):
  n, k, s, p, ci, co = case
  x, w, y, pad = _data(*case)
  ref = jnp.vdot(y, conv.conv2d_reference(x, w, (s, s), pad))
  for fn in (conv._transpose_scatter, conv._transpose_subpixel):  # pylint: disable=protected-access
    got = jnp.vdot(fn(y, w, (n, n), (s, s), pad), x)
    assert abs(float(got - ref)) <= 1e-12 * abs(float(ref)), fn.__name__


@pytest.mark.parametrize("case", [CASES[i] for i in (0, 2, 3, 6, 8)])
def test_first_and_second_derivatives_match_xla(case):
  n, k, s, p, ci, co = case
  x, w, _, pad = _data(*case)
  f = lambda x, w: jnp.sum(jnp.sin(conv.conv2d(x, w, (s, s), pad)))
  r = lambda x, w: jnp.sum(jnp.sin(conv.conv2d_reference(x, w, (s, s), pad)))
  np.testing.assert_array_equal(conv.conv2d(x, w, (s, s), pad),
                                conv.conv2d_reference(x, w, (s, s), pad))
  for a, b in zip(jax.grad(f, (0, 1))(x, w), jax.grad(r, (0, 1))(x, w)):
    _close(a, b)
  # Reverse over reverse, as in the WGAN-GP penalty.
  gf = lambda x, w: jnp.sum(jnp.cos(jax.grad(f)(x, w)))
  gr = lambda x, w: jnp.sum(jnp.cos(jax.grad(r)(x, w)))
  for a, b in zip(jax.grad(gf, (0, 1))(x, w), jax.grad(gr, (0, 1))(x, w)):
    _close(a, b)


@pytest.mark.parametrize("case", [CASES[i] for i in (1, 4, 9)])
def test_transpose_gradients_match_autodiff_of_its_definition(case):
  n, k, s, p, ci, co = case
  _, w, y, pad = _data(*case)
  t = lambda y, w: jnp.sum(jnp.sin(conv.conv2d_transpose(y, w, (n, n), (s, s), pad)))
  tr = lambda y, w: jnp.sum(jnp.sin(conv._transpose_impl(y, w, (n, n), (s, s), pad)))  # pylint: disable=protected-access
  for a, b in zip(jax.grad(t, (0, 1))(y, w), jax.grad(tr, (0, 1))(y, w)):
    _close(a, b)


def test_conv_transpose_layer_shapes():
  layer = conv.ConvTranspose(3, (8, 8), strides=(2, 2))
  y = jnp.ones((2, 11, 11, 5))
  params = layer.init(jax.random.key(0), y)
  assert params["params"]["kernel"].shape == (8, 8, 3, 5)
  assert layer.apply(params, y).shape == (2, 28, 28, 3)
