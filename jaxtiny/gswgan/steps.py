"""Pure GS-WGAN update steps: critic (WGAN-GP), sanitized generator, EMA.

Every function is pure: networks are passed as static flax modules, state as
`TrainState` pytrees (spectral-norm vectors live in `model_state`), and
randomness as explicit keys. One training iteration is `n_critic` critic steps
followed by one generator step (`iteration`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxtiny.gswgan import models
from jaxtiny.privacy import sanitizer
from jaxtiny.train.state import TrainState


def make_optimizer(lr: float = 1e-4, b1: float = 0.5, b2: float = 0.9
                   ) -> optax.GradientTransformation:
  return optax.adam(lr, b1=b1, b2=b2)


def init_net(key: jax.Array, net: nn.Module, tx: optax.GradientTransformation,
             batch: int = 2) -> TrainState:
  """Initial TrainState of a generator or discriminator."""
  k_params, k_input = jax.random.split(key)
  y = jnp.zeros((batch,), jnp.int32)
  if isinstance(net, models.Discriminator):
    inputs = (jnp.zeros((batch, 28, 28, 1)), y)
  else:
    inputs = (models.sample_latent(k_input, batch), y)
  variables = net.init({"params": k_params}, *inputs)
  params = variables["params"]
  stats = {k: v for k, v in variables.items() if k != "params"}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), model_state=stats)


def _vars(state_or_params: Any, stats: Any) -> dict:
  return {"params": state_or_params, **stats}


def apply_net(net: nn.Module, params: Any, stats: Any, *inputs,
              update_stats: bool = False):
  """Applies `net`; with update_stats also returns the new model state."""
  if update_stats:
    out, new_stats = net.apply(_vars(params, stats), *inputs, update_stats=True,
                               mutable=list(stats.keys()))
    return out, {**stats, **new_stats}
  return net.apply(_vars(params, stats), *inputs)


def generate(gen: nn.Module, params: Any, stats: Any, key: jax.Array,
             labels: jax.Array) -> jax.Array:
  """Samples [B, 28, 28, 1] images in [0, 1] for `labels` [B]."""
  z = models.sample_latent(key, labels.shape[0])
  return apply_net(gen, params, stats, z, labels)


def critic_loss(d_params: Any, d_stats: Any, real_x: jax.Array, real_y: jax.Array,
                fake_x: jax.Array, key: jax.Array, *, disc: nn.Module,
                gp_weight: float = 10.0, drift: float = 1e-3,
                fake_y: jax.Array | None = None, fake_w: jax.Array | None = None):
  """WGAN-GP critic loss on one batch.

  mean D(fake) - mean D(real) + gp_weight * mean (|grad D(x_hat)| - 1)^2
  + drift * mean D(real)^2, with x_hat per-sample interpolates of real and fake
  scored with the real labels. Real and fake go through the critic as one
  batch (one forward pass, one spectral-norm power iteration, whose updated
  vectors are returned and also used for the penalty's forward pass).

  By default the fakes are scored with the real labels (the centralized
  algorithm generates them for those labels). A federated user scores received
  samples with their own labels `fake_y` and averages D(fake) with per-sample
  weights `fake_w` >= 0 (e.g. 0 for labels it holds no records of):
  sum_i w_i D(fake_i) / max(sum_i w_i, 1).
  """
  batch = real_x.shape[0]
  scores, new_stats = apply_net(disc, d_params, d_stats,
                                jnp.concatenate([real_x, fake_x]),
                                jnp.concatenate([real_y, real_y if fake_y is None else fake_y]),
                                update_stats=True)
  d_real, d_fake = scores[:batch], scores[batch:]
  if fake_w is None:
    fake_term = jnp.mean(d_fake)
  else:
    fake_term = jnp.sum(fake_w * d_fake) / jnp.maximum(jnp.sum(fake_w), 1.0)
  alpha = jax.random.uniform(key, (batch, 1, 1, 1), real_x.dtype)
  x_hat = alpha * real_x + (1.0 - alpha) * fake_x
  # The critic treats examples independently, so the gradient of the sum is
  # the stack of per-example input gradients.
  grads = jax.grad(lambda x: jnp.sum(apply_net(disc, d_params, new_stats, x, real_y)))(x_hat)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(batch, -1)), -1) + 1e-12)
  gp = jnp.mean(jnp.square(norms - 1.0))
  wdist = jnp.mean(d_real) - fake_term
  loss = -wdist + gp_weight * gp + drift * jnp.mean(jnp.square(d_real))
  return loss, (new_stats, {"d_loss": loss, "wasserstein": wdist, "gp": gp})


def critic_step(d: TrainState, real_x: jax.Array, real_y: jax.Array,
                fake_x: jax.Array, key: jax.Array, *, disc: nn.Module,
                tx: optax.GradientTransformation, gp_weight: float = 10.0,
                drift: float = 1e-3):
  """One non-private critic update on a real batch and generated `fake_x`."""
  grads, (new_stats, metrics) = jax.grad(critic_loss, has_aux=True)(
      d.params, d.model_state, real_x, real_y, jax.lax.stop_gradient(fake_x), key,
      disc=disc, gp_weight=gp_weight, drift=drift)
  return d.apply_gradients(tx, grads, model_state=new_stats), metrics


def generator_loss(g_params: Any, g_stats: Any, d_params: Any, d_stats: Any,
                   key: jax.Array, *, gen: nn.Module, disc: nn.Module,
                   batch_size: int, num_classes: int, clip_norm: float,
                   noise_multiplier: float, sanitize: bool = True):
  """-mean D(G(z, y'), y') with y' uniform; the gradient reaching the
  generator output is sanitized per example when `sanitize`."""
  k_y, k_z, k_noise = jax.random.split(key, 3)
  y = jax.random.randint(k_y, (batch_size,), 0, num_classes)
  z = models.sample_latent(k_z, batch_size)
  fake, new_g_stats = apply_net(gen, g_params, g_stats, z, y, update_stats=True)
  if sanitize:
    fake = sanitizer.sanitize_output(fake, k_noise, clip_norm, noise_multiplier)
  loss = -jnp.mean(apply_net(disc, d_params, d_stats, fake, y))
  return loss, (new_g_stats, {"g_loss": loss})


def generator_step(g: TrainState, d_params: Any, d_stats: Any, key: jax.Array, *,
                   gen: nn.Module, disc: nn.Module, tx: optax.GradientTransformation,
                   batch_size: int, num_classes: int, clip_norm: float,
                   noise_multiplier: float, sanitize: bool = True):
  """One generator update through the (sanitized) discriminator gradient."""
  grads, (new_stats, metrics) = jax.grad(generator_loss, has_aux=True)(
      g.params, g.model_state, d_params, d_stats, key, gen=gen, disc=disc,
      batch_size=batch_size, num_classes=num_classes, clip_norm=clip_norm,
      noise_multiplier=noise_multiplier, sanitize=sanitize)
  return g.apply_gradients(tx, grads, model_state=new_stats), metrics


def ema_update(ema: Any, params: Any, step: jax.Array, max_decay: float = 0.999) -> Any:
  """EMA with alpha = min(1 - 1/(t+1), max_decay), t = generator steps so far."""
  t = step.astype(jnp.float32)
  alpha = jnp.minimum(1.0 - 1.0 / (t + 1.0), max_decay)
  return jax.tree.map(lambda e, p: alpha * e + (1.0 - alpha) * p, ema, params)


def iteration(g: TrainState, ema: Any, d: TrainState, real_x: jax.Array,
              real_y: jax.Array, key: jax.Array, *, gen: nn.Module, disc: nn.Module,
              tx_g: optax.GradientTransformation, tx_d: optax.GradientTransformation,
              num_classes: int, clip_norm: float, noise_multiplier: float,
              sanitize: bool = True, gp_weight: float = 10.0, drift: float = 1e-3,
              ema_decay: float = 0.999):
  """`n_critic` critic steps (one per batch in real_x [n_critic, B, ...]) then
  one generator step and the EMA update (decay capped at `ema_decay`);
  returns (g, ema, d, metrics)."""
  n_critic, batch_size = real_x.shape[:2]
  k_fake, k_gen, *keys = jax.random.split(key, n_critic + 2)
  real_x = real_x.astype(jnp.float32) / 255.0 if real_x.dtype == jnp.uint8 else real_x
  # The generator is fixed during the critic steps, so their fakes (with the
  # real batches' labels) come from one generator call.
  fakes = generate(gen, g.params, g.model_state, k_fake,
                   real_y.reshape(-1)).reshape(real_x.shape)

  # A Python loop, not lax.scan: XLA:CPU runs these convolutions about 10x
  # slower inside a while loop (measured: 15.5 s vs 1.5 s per iteration).
  d_metrics = []
  for i in range(n_critic):
    d, m = critic_step(d, real_x[i], real_y[i], fakes[i], keys[i], disc=disc, tx=tx_d,
                       gp_weight=gp_weight, drift=drift)
    d_metrics.append(m)
  d_metrics = jax.tree.map(lambda *xs: jnp.stack(xs), *d_metrics)
  g_new, g_metrics = generator_step(
      g, d.params, d.model_state, k_gen, gen=gen, disc=disc, tx=tx_g,
      batch_size=batch_size, num_classes=num_classes, clip_norm=clip_norm,
      noise_multiplier=noise_multiplier, sanitize=sanitize)
  ema = ema_update(ema, g_new.params, g.step, ema_decay)
  metrics = {**jax.tree.map(lambda m: m[-1], d_metrics), **g_metrics}
  return g_new, ema, d, metrics


def sanitized_sample_gradients(g_params: Any, g_stats: Any, d_params: Any,
                               d_stats: Any, key: jax.Array, *, gen: nn.Module,
                               disc: nn.Module, batch_size: int, num_classes: int,
                               clip_norm: float, noise_multiplier: float):
  """Reference path: explicit per-example gradients by `vmap(grad)`.

  Returns (fake [B, ...], sanitized per-example gradients [B, ...], new G
  stats, the generator's vjp function). The same keys are drawn as in
  `generator_loss`, so `vjp(sanitized)` must equal its gradient.
  """
  k_y, k_z, k_noise = jax.random.split(key, 3)
  y = jax.random.randint(k_y, (batch_size,), 0, num_classes)
  z = models.sample_latent(k_z, batch_size)

  def forward(params):
    return apply_net(gen, params, g_stats, z, y, update_stats=True)

  fake, vjp_fn, new_stats = jax.vjp(forward, g_params, has_aux=True)

  def loss_i(x_i, y_i):  # Example i's term of -mean_j D(x_j, y_j).
    return -apply_net(disc, d_params, d_stats, x_i[None], y_i[None])[0] / batch_size

  per_example = jax.vmap(jax.grad(loss_i))(fake, y)
  sanitized = sanitizer.sanitize(per_example, k_noise, clip_norm, noise_multiplier)
  return fake, sanitized, new_stats, vjp_fn
