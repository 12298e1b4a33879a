"""GS-WGAN steps: custom_vjp sanitization equals the vmap reference, and the
generator sees private data only through the sanitized vector."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtiny.gswgan import models
from jaxtiny.gswgan import steps
from jaxtiny.privacy import sanitizer

B = 8


@pytest.fixture(scope="module")
def nets():
  gen, disc = models.DCGANGenerator(), models.Discriminator()
  tx = steps.make_optimizer()
  g = steps.init_net(jax.random.key(0), gen, tx)
  d = steps.init_net(jax.random.key(1), disc, tx)
  return gen, disc, tx, g, d


def _kw(gen, disc, sigma):
  return dict(gen=gen, disc=disc, batch_size=B, num_classes=10, clip_norm=1.0 / B,
              noise_multiplier=sigma)


def _jitted(gen, disc, tx, sigma):
  """(custom-vjp generator gradient, reference sanitized vector + vjp, critic step)."""
  kw = _kw(gen, disc, sigma)
  grad_fn = jax.jit(lambda gp, gs, dp, ds, k: jax.grad(steps.generator_loss, has_aux=True)(
      gp, gs, dp, ds, k, **kw)[0])

  @jax.jit
  def reference(gp, gs, dp, ds, k):
    _, v, _, vjp_fn = steps.sanitized_sample_gradients(gp, gs, dp, ds, k, **kw)
    return v, vjp_fn(v)[0]

  @jax.jit
  def vjp_of(gp, gs, dp, ds, k, v):
    return steps.sanitized_sample_gradients(gp, gs, dp, ds, k, **kw)[3](v)[0]

  critic_step = jax.jit(functools.partial(steps.critic_step, disc=disc, tx=tx))
  sample = jax.jit(functools.partial(steps.generate, gen))

  def critic(d, gp, gs, x, y, k):
    return critic_step(d, x, y, sample(gp, gs, jax.random.fold_in(k, 1), y), k)

  return grad_fn, reference, vjp_of, critic


def _assert_same_gradients(tree, ref):
  """Two programs computing one gradient sum in different orders: entries near
  zero differ by a few float32 ulps of the leaf's largest entry (1.8e-7 on an
  H200, where a leaf's max is ~2), so the absolute tolerance scales with it."""
  for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(ref), strict=True):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6 * float(np.max(np.abs(b))))


@pytest.mark.parametrize("sigma", [0.0, 1.07])
def test_custom_vjp_equals_vmap_reference(nets, sigma):
  gen, disc, tx, g, d = nets
  grad_fn, reference, _, _ = _jitted(gen, disc, tx, sigma)
  key = jax.random.key(42)
  args = (g.params, g.model_state, d.params, d.model_state, key)
  grads = grad_fn(*args)
  sanitized, ref = reference(*args)
  _assert_same_gradients(grads, ref)
  norms = sanitizer.per_example_norms(sanitized)
  if sigma == 0:
    np.testing.assert_allclose(norms, 1.0 / B, rtol=1e-5)


def test_generator_update_depends_on_data_only_through_sanitized_vector(nets):
  """Perturb one shard: the discriminator (trained on it) changes, and the
  generator gradient is exactly vjp_G(sanitized vector) in both cases.

  Full float32 precision: the check subtracts two nearby updates, which
  TF32 convolutions (the GPU default) would swamp with rounding noise."""
  with jax.default_matmul_precision("float32"):
    _check_update_depends_only_on_sanitized_vector(nets)


def _check_update_depends_only_on_sanitized_vector(nets):
  gen, disc, tx, g, d = nets
  rng = np.random.default_rng(0)
  shard = rng.random((2, B, 28, 28, 1)).astype(np.float32)
  labels = rng.integers(0, 10, (2, B)).astype(np.int32)
  perturbed = shard.copy()
  perturbed[0, 3] = 1.0 - perturbed[0, 3]  # Change one record.
  key = jax.random.key(7)
  grad_fn, reference, vjp_of, critic = _jitted(gen, disc, tx, 1.07)
  results = []
  for data in (shard, perturbed):
    d_new = d
    for i in range(2):
      d_new, _ = critic(d_new, g.params, g.model_state, jnp.asarray(data[i]),
                        jnp.asarray(labels[i]), jax.random.fold_in(key, i))
    args = (g.params, g.model_state, d_new.params, d_new.model_state, key)
    grads = grad_fn(*args)
    v, via_v = reference(*args)
    _assert_same_gradients(grads, via_v)
    results.append((grads, v))
  # The perturbation reached the generator (through v) ...
  assert not np.allclose(results[0][1], results[1][1])
  # ... and the change in the update is exactly the vjp of the change in v
  # (the generator's vjp does not depend on the discriminator).
  dv_update = vjp_of(g.params, g.model_state, d.params, d.model_state, key,
                     results[1][1] - results[0][1])
  for a, b, c in zip(jax.tree.leaves(results[1][0]), jax.tree.leaves(results[0][0]),
                     jax.tree.leaves(dv_update)):
    np.testing.assert_allclose(a - b, c, rtol=2e-3, atol=2e-5)


def test_critic_loss_gradient_penalty_and_ema(nets):
  gen, disc, tx, g, d = nets
  x = jnp.asarray(np.random.default_rng(0).random((B, 28, 28, 1)), jnp.float32)
  y = jnp.arange(B, dtype=jnp.int32) % 10
  _, (stats, m) = steps.critic_loss(d.params, d.model_state, x, y, x, jax.random.key(0),
                                    disc=disc)
  # Real and fake share one forward pass, so with fake == real the Wasserstein
  # estimate is 0 up to rounding; the GP is finite.
  assert abs(float(m["wasserstein"])) < 1e-5 and np.isfinite(float(m["gp"]))
  # The power iteration updated the spectral-norm vectors.
  changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(stats),
                                                   jax.tree.leaves(d.model_state))]
  assert any(changed)
  ema = jax.tree.map(jnp.zeros_like, g.params)
  first = steps.ema_update(ema, g.params, jnp.asarray(0))  # alpha = 0 at t = 0.
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(g.params)):
    np.testing.assert_allclose(a, b)
  late = steps.ema_update(ema, g.params, jnp.asarray(10**6))  # alpha capped at 0.999.
  for a, b in zip(jax.tree.leaves(late), jax.tree.leaves(g.params)):
    np.testing.assert_allclose(a, 0.001 * np.asarray(b), rtol=1e-4, atol=1e-8)


def test_generators_and_discriminator_shapes():
  key = jax.random.key(0)
  z = models.sample_latent(key, 3)
  assert set(np.unique(np.asarray(z))) <= {0.0, 1.0}
  y = jnp.array([0, 5, 9])
  for gen in (models.DCGANGenerator(), models.ResNetGenerator(channels=16)):
    v = gen.init(key, z, y)
    x = gen.apply(v, z, y)
    assert x.shape == (3, 28, 28, 1) and float(x.min()) >= 0 and float(x.max()) <= 1
  disc = models.Discriminator()
  v = disc.init(key, jnp.zeros((3, 28, 28, 1)), y)
  assert disc.apply(v, jnp.zeros((3, 28, 28, 1)), y).shape == (3,)


def test_hard_sigmoid_output_reaches_exact_black_and_white():
  """`hard_sigmoid` is relu6(h + 3) / 6: 0.5 at 0 like the sigmoid, exactly 0
  (1) with zero gradient for h <= -3 (>= 3), slope 1/6 between; the
  generators' parameters do not depend on the output, and a generator whose
  last bias is pushed below -3 draws an exactly black image."""
  h = jnp.array([-5.0, -3.0, -1.5, 0.0, 1.5, 3.0, 5.0])
  out = models.pixel_output(h, "hard_sigmoid")
  np.testing.assert_allclose(out, [0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-7)
  grad = jax.vmap(jax.grad(lambda v: models.pixel_output(v, "hard_sigmoid")))(h)
  np.testing.assert_allclose(grad, [0, 0, 1 / 6, 1 / 6, 1 / 6, 0, 0], atol=1e-7)
  sig = models.pixel_output(h, "sigmoid")
  assert float(sig.min()) > 0 and float(sig.max()) < 1  # The paper's never reaches 0 / 1.
  key = jax.random.key(0)
  z, y = models.sample_latent(key, 4), jnp.array([0, 3, 7, 9])
  for name in ("dcgan", "resnet"):
    soft = models.make_generator(name)
    hard = models.make_generator(name, "hard_sigmoid")
    if name == "resnet":
      soft, hard = soft.clone(channels=16), hard.clone(channels=16)
    v = hard.init(key, z, y)
    assert jax.tree.structure(v) == jax.tree.structure(soft.init(key, z, y))
    x = hard.apply(v, z, y)
    assert x.shape == (4, 28, 28, 1) and 0 <= float(x.min()) <= float(x.max()) <= 1
  v = models.make_generator("dcgan", "hard_sigmoid").init(key, z, y)
  params = jax.tree.map(lambda a: a, v["params"])
  last = sorted(k for k in params if k.startswith("ConvTranspose"))[-1]
  params[last]["bias"] = params[last]["bias"] - 1e3
  black = models.make_generator("dcgan", "hard_sigmoid").apply({**v, "params": params}, z, y)
  assert float(jnp.max(black)) == 0.0
  with pytest.raises(ValueError, match="generator_output='tanh'"):
    models.make_generator("dcgan", "tanh")


def test_discriminator_normalises_every_weight_matrix_including_the_embedding():
  """Spectral norm on the three convs, the output layer and (as in the
  authors' code) the class embedding: each stored sigma is a power-iteration
  estimate of the top singular value of its raw weight matrix, never above
  it (u^T W v <= sigma_max for unit u, v) and close after 60 iterations."""
  disc = models.Discriminator()
  x = jnp.asarray(np.random.default_rng(0).random((4, 28, 28, 1)), jnp.float32)
  y = jnp.array([0, 3, 7, 9])
  variables = disc.init(jax.random.key(0), x, y)
  params, stats = variables["params"], {"batch_stats": variables["batch_stats"]}
  for _ in range(60):
    _, stats = steps.apply_net(disc, params, stats, x, y, update_stats=True)
  sigmas = {name.split("/")[0]: float(v) for entry in stats["batch_stats"].values()
            for name, v in entry.items() if name.endswith("sigma")}
  assert set(sigmas) == {"Conv_0", "Conv_1", "Conv_2", "Dense_0", "Embed_0"}
  for name, sigma in sigmas.items():
    w = np.asarray(next(iter(params[name].values())) if name == "Embed_0"
                   else params[name]["kernel"])
    top = np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]
    assert 0.98 * top <= sigma <= top * (1 + 1e-5), (name, sigma, top)
