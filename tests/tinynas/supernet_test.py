"""Standalone network, elastic supernet, extraction and channel sorting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtiny.nn import conv as conv_lib
from jaxtiny.tinynas import model
from jaxtiny.tinynas import profile as profile_lib
from jaxtiny.tinynas import space as space_lib
from jaxtiny.tinynas import supernet

SPACE = space_lib.SearchSpace(0.2, 32)


def _perturbed(params, state, seed=1):
  """Non-trivial BN statistics, transforms and classifier, so that equalities
  below are not satisfied by accident."""
  leaves, tree = jax.tree_util.tree_flatten(state)
  keys = jax.random.split(jax.random.key(seed), len(leaves) + 2 * 64)
  state = jax.tree_util.tree_unflatten(
      tree, [l + 0.5 * jnp.abs(jax.random.normal(k, l.shape))
             for l, k in zip(leaves, keys)])
  params = jax.tree_util.tree_map(lambda a: a, params)
  for i, slot in enumerate(params["slots"]):
    slot["t75"] = slot["t75"] + 0.1 * jax.random.normal(keys[-2 * i - 1], (25, 25))
    slot["t53"] = slot["t53"] + 0.1 * jax.random.normal(keys[-2 * i - 2], (9, 9))
  params["classifier"]["w"] = params["classifier"]["w"] * 100
  return params, state


@pytest.mark.parametrize("k, stride, size", [(3, 1, 9), (5, 2, 10), (7, 2, 9),
                                             (7, 1, 6)])
def test_depthwise_matches_xla_and_its_gradient(k, stride, size):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 5))
  w = jax.random.normal(jax.random.key(1), (k, k, 1, 5))
  ref = lambda x, w: model.conv(x, w, stride, 5)
  ours = lambda x, w: conv_lib.depthwise_conv2d(x, w, stride)
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  g_ref = jax.grad(loss(ref), argnums=(0, 1))(x, w)
  g_ours = jax.grad(loss(ours), argnums=(0, 1))(x, w)
  for a, b in zip(g_ours, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("budget_images", [1, 4, 100])
def test_depthwise_filter_gradient_is_the_same_in_cache_sized_chunks(
    budget_images, monkeypatch):
  # 6 images: a budget of 4 images rounds down to chunks of 3 (a divisor),
  # 1 gives six chunks, 100 a single unchunked pass.
  k, stride = 5, 2
  x = jax.random.normal(jax.random.key(0), (6, 11, 11, 7))
  w = jax.random.normal(jax.random.key(1), (k, k, 1, 7))
  per_image = ((11 + 4) ** 2 * 7 + 6 * 6 * 7) * 4
  monkeypatch.setattr(conv_lib, "_FILTER_GRAD_CHUNK_BYTES",
                      budget_images * per_image)
  loss = lambda f: lambda w: jnp.sum(jnp.sin(f(x, w)))
  g_ours = jax.grad(loss(lambda x, w: conv_lib.depthwise_conv2d(x, w, stride)))(w)
  g_ref = jax.grad(loss(lambda x, w: model.conv(x, w, stride, 7)))(w)
  np.testing.assert_allclose(g_ours, g_ref, rtol=1e-4, atol=1e-4)


def test_elastic_kernel_is_plain_crop_with_identity_transforms():
  params, _ = supernet.init(SPACE, jax.random.key(0))
  slot = params["slots"][2]
  k3, k5, k7 = supernet.elastic_kernels(SPACE, slot)
  np.testing.assert_array_equal(k5, k7[1:6, 1:6])
  np.testing.assert_array_equal(k3, k7[2:5, 2:5])
  # And a learned transform changes them.
  slot = dict(slot, t53=slot["t53"] * 2.0)
  np.testing.assert_allclose(supernet.elastic_kernels(SPACE, slot)[0],
                             2 * k7[2:5, 2:5], rtol=1e-6)


def test_extracted_subnet_equals_standalone_network():
  params, state = _perturbed(*supernet.init(SPACE, jax.random.key(0)))
  rng = np.random.default_rng(0)
  x = jax.random.uniform(jax.random.key(2), (3, 32, 32, 1))
  run = jax.jit(lambda p, s, x, e: supernet.apply(SPACE, p, s, x, e, False)[0])
  choices = [space_lib.smallest(SPACE), space_lib.largest(SPACE)]
  choices += [space_lib.sample(SPACE, rng)]
  for choice in choices:
    arch, p, s = supernet.extract(SPACE, params, state, choice)
    assert arch == space_lib.to_arch(SPACE, choice)
    # The copied weights have exactly the standalone network's shapes.
    ref_p, ref_s = model.init(arch, jax.random.key(0))
    assert (jax.tree_util.tree_map(jnp.shape, p)
            == jax.tree_util.tree_map(jnp.shape, ref_p))
    assert (jax.tree_util.tree_map(jnp.shape, s)
            == jax.tree_util.tree_map(jnp.shape, ref_s))
    n_params = sum(a.size for a in jax.tree_util.tree_leaves(p))
    assert n_params == profile_lib.profile(arch)["params"]
    want = jax.jit(lambda p, s, x: model.apply(arch, p, s, x, False)[0])(
        p, s, x)
    got = run(params, state, x, supernet.encode(SPACE, choice))
    assert float(jnp.abs(want).max()) > 0.1
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # Different subnets, one compiled program.
  assert run._cache_size() == 1


def test_channel_sorting_preserves_the_full_network():
  params, state = _perturbed(*supernet.init(SPACE, jax.random.key(3)))
  x = jax.random.uniform(jax.random.key(4), (3, 32, 32, 1))
  enc = supernet.encode(SPACE, space_lib.largest(SPACE))
  run = jax.jit(lambda p, s: supernet.apply(SPACE, p, s, x, enc, False)[0])
  before = run(params, state)
  sp, ss = supernet.sort_channels(params, state)
  after = run(sp, ss)
  np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)
  # Sorted: importance is non-increasing in every slot, and it was not before.
  was_sorted = []
  for before_slot, slot in zip(params["slots"], sp["slots"]):
    imp = np.abs(np.asarray(slot["project"]["w"])).sum(axis=(0, 1, 3))
    assert np.all(np.diff(imp) <= 1e-6)
    old = np.abs(np.asarray(before_slot["project"]["w"])).sum(axis=(0, 1, 3))
    was_sorted.append(np.all(np.diff(old) <= 0))
  assert not all(was_sorted)


def test_training_mode_updates_only_active_channels():
  params, state = supernet.init(SPACE, jax.random.key(0))
  choice = space_lib.smallest(SPACE)
  x = jax.random.uniform(jax.random.key(5), (4, 32, 32, 1))
  _, new = jax.jit(lambda p, s, x, e: supernet.apply(SPACE, p, s, x, e, True))(
      params, state, x, supernet.encode(SPACE, choice))
  mid = SPACE.widths[1] * choice.expands[0]
  ex_old, ex_new = state["slots"][0]["expand"], new["slots"][0]["expand"]
  assert not np.allclose(ex_new["var"][:mid], ex_old["var"][:mid])
  np.testing.assert_array_equal(ex_new["var"][mid:], ex_old["var"][mid:])
  # A skipped block (third of stage 0 at depth 2) keeps its statistics.
  skipped_old, skipped_new = state["slots"][2], new["slots"][2]
  for part in ("expand", "dw", "project"):
    np.testing.assert_array_equal(skipped_new[part]["var"],
                                  skipped_old[part]["var"])
