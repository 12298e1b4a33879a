"""Federated GS-WGAN (user-level DP) and the DP-FedAvg-GAN baseline.

GS-WGAN round (`GsWganFederated`):

0. Local warm start (GS-WGAN's stage 1, on each user's device): every user
   trains its discriminator non-privately on its own records against a
   throw-away generator of its own (`user_warmup_iterations`); nothing is
   sent, so it costs no payload and no privacy.
1. The server samples users (Poisson with rate q, or a fixed count m), draws
   B uniform labels per sampled user, generates B samples per user with its
   generator, and sends each user its samples and labels (the download).
2. Each sampled user keeps its own discriminator on its device. It runs
   `n_critic` non-private WGAN-GP critic steps on its own records against the
   received samples, then computes the gradient of its generator loss
   -1/B sum_i D(x_i, y_i) with respect to each received sample, clips each of
   the B gradients to norm C/B and adds Gaussian noise of std
   sigma * sqrt(B) * C/B per coordinate (`sanitizer.sanitize_user_upload`):
   the user's whole upload is bounded by sqrt(B) * C/B however many records
   it holds. Samples whose label the user holds no record of get no signal
   (zero before noise), so a user never pushes classes it has never seen.
3. The server divides the sum of the uploads by the expected number of users
   (q * U for Poisson sampling, m for fixed) and back-propagates it through
   its generator (one Adam step); an EMA of the generator is the released
   model.

DP-FedAvg-GAN round (`FedAvgGan`, in the style of Augenstein et al., ICLR
2020): sampled users receive both networks, train them locally (`local_steps`
iterations of n_critic critic steps and one generator step, fresh local Adam
state), clip the joint parameter update (generator and discriminator) to norm
S and add Gaussian noise of std sigma * S per coordinate on the device; the
server adds the sum of the uploads divided by the expected number of users,
times `server_lr`, to its networks.

Both run on the same partition with the same user sampling, so the same
user-level accountant (`jaxtiny.privacy.user_level`) applies to both. Payloads
are measured from the arrays that cross the user/server boundary in the
simulation (`nbytes` of what is sent), per user per round.

Wire formats (`config.wire`, the same rule for both methods): "float32" sends
every float as float32 (the paper's counting). "compact" sends every float
(gradients, parameter updates, weights, spectral-norm vectors) as bfloat16
and images at their native 8 bits (uint8, the precision of the private
records themselves): GS-WGAN's users train their critics on the received
8-bit samples and the server applies their gradients to the float samples
(straight-through); uploads are rounded on the user's device after
clipping and noise, post-processing that changes no privacy guarantee.

Simulated users run under `vmap` (accelerators; chunks of `user_chunk` users,
the chunk axis sharded over local devices) or one after another (CPU, where
XLA lowers convolutions with per-user weights to slow grouped convolutions).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtiny import data
from jaxtiny import fileio
from jaxtiny.data import federated as fed_data
from jaxtiny.gswgan import bank as bank_lib
from jaxtiny.gswgan import models
from jaxtiny.gswgan import steps
from jaxtiny.gswgan import train as central
from jaxtiny.privacy import accounting
from jaxtiny.privacy import sanitizer
from jaxtiny.privacy import user_level
from jaxtiny.train import checkpoint
from jaxtiny.train import distributed
from jaxtiny.train import metrics as metrics_lib
from jaxtiny.train import plots
from jaxtiny.train.state import TrainState

METHODS = ("gswgan", "fedavg_gan")


# --- Data ---------------------------------------------------------------------


def load_users(config) -> tuple[np.ndarray, np.ndarray, fed_data.Partition]:
  """Training images (uint8), labels and the user partition of `config`."""
  if config.dataset == "fed_emnist":
    path = fed_data.tff_emnist_path(data.data_dir(config.data_dir or None), "train")
    x, y, part, _ = fed_data.load_tff_emnist(path, max_users=config.num_users)
    return x, y, part
  x, y = data.load(config.dataset, "train", config.data_dir or None)
  if config.partition == "iid":
    part = fed_data.partition_iid(len(y), config.num_users, config.seed)
  elif config.partition == "non_iid":
    part = fed_data.partition_non_iid(
        y, config.num_users, config.seed, dominant_share=config.non_iid.dominant_share,
        size_sigma=config.non_iid.size_sigma, min_size=config.non_iid.min_size)
  else:
    raise ValueError(f"partition={config.partition!r}: use 'iid' or 'non_iid' "
                     "(or dataset='fed_emnist' for the real users).")
  return x, y, part


LABEL_WEIGHTINGS = ("held", "frequency", "importance")


def check_label_weighting(mode: str) -> None:
  if mode not in LABEL_WEIGHTINGS:
    raise ValueError(f"label_weighting={mode!r}; use one of {', '.join(LABEL_WEIGHTINGS)}.")


def label_weights(user_labels: np.ndarray, mode: str) -> np.ndarray:
  """Per-label weights [num_classes] a user gives the samples it receives.

  "held": 1 for every label the user holds at least one record of, 0 otherwise.
  "frequency": min(1, K * share of the user's records with that label), so a
  user whose records are balanced weighs every label 1 and a non-IID user
  weighs a label it holds a handful of records of by how much of it it holds.
  "importance": K * share, uncapped: the importance weight that turns the
  uniform labels the server sends into the user's own label distribution, so
  in the critic's weighted mean over fakes every label counts exactly as
  often as among the user's records and the critic cannot tell real from
  fake by the label alone (with "held", a skewed user's critic meets its
  minority labels mostly on fakes and learns "this label means fake").
  Computed on the user's device. Each sample's gradient is clipped after its
  weight is applied (`user_round`), so the upload bound is the same in every
  mode, weights above 1 included.
  """
  check_label_weighting(mode)
  counts = np.bincount(user_labels, minlength=models.NUM_CLASSES).astype(np.float64)
  if mode == "held":
    return (counts > 0).astype(np.float32)
  share = counts / max(counts.sum(), 1.0)
  if mode == "frequency":
    return np.minimum(1.0, models.NUM_CLASSES * share).astype(np.float32)
  return (models.NUM_CLASSES * share).astype(np.float32)


def user_batches(records: np.ndarray, num: int, batch_size: int,
                 rng: np.random.Generator) -> np.ndarray:
  """`num` batches of record indices [num, B] from one user: without
  replacement within a batch when the user holds enough records, with
  replacement otherwise."""
  replace = len(records) < batch_size
  return np.stack([rng.choice(records, batch_size, replace=replace) for _ in range(num)])


def sample_users(settings: user_level.UserDpSettings, rng: np.random.Generator) -> np.ndarray:
  """The users taking part in one round (sorted ids)."""
  if settings.sampling == "poisson":
    return np.flatnonzero(rng.random(settings.num_users) < settings.rate)
  return np.sort(rng.choice(settings.num_users, settings.users_per_round, replace=False))


def critic_learning_rate(config, method: str = "gswgan") -> float:
  """The critics' Adam learning rate of `method`: `critic_learning_rate`
  (GS-WGAN's users' critics) or `fedavg.critic_learning_rate` (the
  baseline's critic), each falling back to the generators' `learning_rate`
  where it is 0 (or absent from an older config)."""
  section, name = ((config.get("fedavg", {}), "fedavg.critic_learning_rate")
                   if method == "fedavg_gan" else (config, "critic_learning_rate"))
  lr = float(section.get("critic_learning_rate", 0.0) or 0.0)
  if lr < 0:
    raise ValueError(f"{name}={lr} is negative; use 0 (the generator's learning_rate) "
                     "or a positive rate.")
  return lr or float(config.learning_rate)


def dp_settings(config, noise_multiplier: float, num_users: int) -> user_level.UserDpSettings:
  return user_level.UserDpSettings(
      noise_multiplier=noise_multiplier, num_users=num_users,
      sampling=config.sampling, rate=config.sampling_rate,
      users_per_round=config.users_per_round, delta=config.dp.delta)


WIRE_FORMATS = ("float32", "compact")


def check_wire(wire: str) -> None:
  if wire not in WIRE_FORMATS:
    raise ValueError(f"wire={wire!r}: use 'float32' (every float as float32) or "
                     "'compact' (floats as bfloat16, images as uint8).")


def wire_dtype(wire: str):
  """The dtype gradients, updates and weights cross the network in."""
  check_wire(wire)
  return jnp.float32 if wire == "float32" else jnp.bfloat16


def images_to_wire(x: np.ndarray, wire: str) -> np.ndarray:
  """Generated images in [0, 1] as sent: float32, or uint8 (round(255 x))."""
  check_wire(wire)
  if wire == "float32":
    return np.asarray(x, np.float32)
  return np.round(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def images_from_wire(x: np.ndarray) -> np.ndarray:
  """What a user's critic sees of received images: float32 in [0, 1]."""
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  return np.asarray(x, np.float32)


def tree_to_wire(tree: Any, wire: str) -> Any:
  """Floating arrays of a pytree cast to the wire's float dtype (others kept)."""
  dtype = wire_dtype(wire)
  return jax.tree.map(
      lambda a: np.asarray(a).astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating)
      else np.asarray(a), jax.device_get(tree))


def tree_from_wire(tree: Any, like: Any) -> Any:
  """A received pytree cast back to the dtypes of `like` (the local copy)."""
  return jax.tree.map(lambda a, b: np.asarray(a).astype(b.dtype), tree, like)


def nbytes(tree: Any) -> int:
  """Bytes of every array in a pytree (what crosses the network), from the
  arrays' shapes and dtypes (no copy to the host)."""
  return int(sum(x.size * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


# --- Pure user/server functions -------------------------------------------------


def sample_gradients(d_params, d_stats, fake_x, fake_y, fake_w, *, disc) -> jax.Array:
  """Per-sample gradients [B, ...] of the user's generator loss
  -1/B sum_i w_i D(x_i, y_i) with respect to each received sample. The
  critic scores examples independently, so the gradient of the sum is the
  stack of per-sample gradients."""
  batch = fake_x.shape[0]

  def loss(x):
    return -jnp.sum(fake_w * steps.apply_net(disc, d_params, d_stats, x, fake_y)) / batch

  return jax.grad(loss)(fake_x)


def user_round(d: TrainState, real_x, real_y, fake_x, fake_y, label_weights, key, *, disc,
               tx, gp_weight: float, drift: float, clip_norm: float,
               noise_multiplier: float, upload_dtype=jnp.float32):
  """Everything one sampled GS-WGAN user does in a round, on its device.

  Args:
    d: the user's discriminator state.
    real_x, real_y: [n_critic, B, 28, 28, 1] float images and [n_critic, B]
      labels from the user's own records.
    fake_x, fake_y: the received samples [B, 28, 28, 1] and labels [B].
    label_weights: [num_classes] float >= 0, the weight of a received
      sample of each label (0 for labels the user holds no record of), in the
      critic's mean over fakes and in the generator loss; see `label_weights`.
    key: the user's randomness this round.
    clip_norm: per-sample bound c (C/B); the upload's norm bound is sqrt(B) c.
    noise_multiplier: sigma; noise std sigma * sqrt(B) * c per coordinate.
    upload_dtype: the wire's float dtype; the sanitized upload is rounded to
      it last (post-processing: the bound and noise above hold before it).

  Returns:
    (new discriminator state, sanitized upload [B, 28, 28, 1] in
    `upload_dtype`, metrics).
  """
  n_critic = real_x.shape[0]
  k_noise, *keys = jax.random.split(key, n_critic + 1)
  fake_w = label_weights[fake_y]
  metrics = {}
  for i in range(n_critic):
    grads, (new_stats, metrics) = jax.grad(steps.critic_loss, has_aux=True)(
        d.params, d.model_state, real_x[i], real_y[i], fake_x, keys[i], disc=disc,
        gp_weight=gp_weight, drift=drift, fake_y=fake_y, fake_w=fake_w)
    d = d.apply_gradients(tx, grads, model_state=new_stats)
  g = sample_gradients(d.params, d.model_state, fake_x, fake_y, fake_w, disc=disc)
  upload = sanitizer.sanitize_user_upload(g, k_noise, clip_norm, noise_multiplier)
  return d, upload.astype(upload_dtype), metrics


def server_generate(gen, g_params, g_stats, key, labels):
  """The samples the server sends: [M, B, 28, 28, 1] for labels [M, B]."""
  m, b = labels.shape
  x = steps.generate(gen, g_params, g_stats, key, labels.reshape(-1))
  return x.reshape(m, b, *x.shape[1:])


def server_update(g: TrainState, ema, key, labels, uploads, denominator, *, gen, tx,
                  ema_decay: float):
  """Back-propagates the aggregated uploads through the generator.

  The generator's forward pass is recomputed with the key and labels of
  `server_generate`, so it yields the samples that were sent; the cotangent
  is sum over users of the uploads divided by `denominator`. Rows of users
  that were not sampled (padding) are zero and contribute nothing.
  """
  m, b = labels.shape
  z = models.sample_latent(key, m * b)

  def forward(params):
    return steps.apply_net(gen, params, g.model_state, z, labels.reshape(-1),
                           update_stats=True)

  fake, vjp_fn, new_stats = jax.vjp(forward, g.params, has_aux=True)
  cotangent = uploads.reshape(fake.shape).astype(fake.dtype) / denominator
  (grads,) = vjp_fn(cotangent)
  g_new = g.apply_gradients(tx, grads, model_state=new_stats)
  ema = steps.ema_update(ema, g_new.params, g.step, ema_decay)
  return g_new, ema, {"upload_norm": jnp.sqrt(jnp.sum(jnp.square(uploads)))}


def fedavg_user(g: TrainState, d: TrainState, real_x, real_y, key, *, gen, disc, tx,
                tx_d, clip_norm: float, noise_multiplier: float, gp_weight: float,
                drift: float, upload_dtype=jnp.float32):
  """One DP-FedAvg-GAN user: local training of both networks from the
  received ones, then the clipped, noised joint parameter update.

  Args:
    g, d: the received networks (their optimizer states are reset locally).
    tx, tx_d: the local optimizers of the generator and of the critic.
    real_x, real_y: [local_steps, n_critic, B, ...] batches of the user's records.
    clip_norm: S, bound on the joint update norm.
    noise_multiplier: sigma; noise std sigma * S per coordinate.
    upload_dtype: the wire's float dtype; the sanitized update is rounded to
      it last (post-processing).

  Returns:
    (sanitized update {"g": ..., "d": ...} in `upload_dtype`, metrics of the
    last local step).
  """
  local_steps, _, batch = real_x.shape[:3]
  k_noise, *keys = jax.random.split(key, local_steps + 1)
  g0, d0 = g.params, d.params
  g = g.replace(opt_state=tx.init(g.params))
  d = d.replace(opt_state=tx_d.init(d.params))
  metrics = {}
  for s in range(local_steps):
    g, _, d, metrics = steps.iteration(
        g, g.params, d, real_x[s], real_y[s], keys[s], gen=gen, disc=disc, tx_g=tx,
        tx_d=tx_d, num_classes=models.NUM_CLASSES, clip_norm=1.0 / batch,
        noise_multiplier=0.0, sanitize=False, gp_weight=gp_weight, drift=drift)
  delta = {"g": jax.tree.map(jnp.subtract, g.params, g0),
           "d": jax.tree.map(jnp.subtract, d.params, d0)}
  update = sanitizer.sanitize_tree(delta, k_noise, clip_norm, noise_multiplier)
  return jax.tree.map(lambda a: a.astype(upload_dtype), update), metrics


def refresh_spectral_norm(net, params, stats, sample_input):
  """One data-free power iteration for every spectrally normalised weight
  (after the server changed the weights)."""
  if not stats:
    return stats
  _, new_stats = steps.apply_net(net, params, stats, *sample_input, update_stats=True)
  return new_stats


def stack(trees: list) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, n: int) -> list:
  return [jax.tree.map(lambda a: a[i], tree) for i in range(n)]


# --- Runners --------------------------------------------------------------------


class _Common:
  """What both methods share: data, users, sampling, progress, outputs."""

  name = ""

  def __init__(self, config, workdir: str, images, labels, part: fed_data.Partition,
               noise_multiplier: float):
    self.config = config
    self.dir = os.path.join(workdir, self.name)
    os.makedirs(self.dir, exist_ok=True)
    self.images, self.labels, self.part = images, labels, part
    self.gen = models.make_generator(config.generator, config.generator_output)
    self.disc = models.Discriminator()
    self.tx = steps.make_optimizer(config.learning_rate, *config.betas)
    # Critics (users' discriminators, and the baseline's) may step faster than
    # the generator (two time-scale update rule); same Adam state layout.
    self.critic_lr = critic_learning_rate(config, self.name)
    self.tx_d = steps.make_optimizer(self.critic_lr, *config.betas)
    self.settings = dp_settings(config, noise_multiplier, part.num_users)
    self.denominator = (self.settings.expected_users_per_round)
    self.root = jax.random.key(config.seed)
    self.mesh = distributed.data_mesh(config.num_devices)
    # Bytes sent to / received from users so far and the number of user-rounds
    # (checkpointed with the state, so a resumed run reports the whole run).
    self.payload = np.zeros(4, np.int64)  # download, upload, downloads, uploads
    self.writer = None

  def _float(self, idx: np.ndarray) -> np.ndarray:
    return self.images[idx].astype(np.float32) / 255.0

  def round_users(self, r: int) -> np.ndarray:
    return sample_users(self.settings, np.random.default_rng([self.config.seed, 3, r]))

  def real_batches(self, u: int, r: int, num: int, stream: int = 4) -> np.ndarray:
    rng = np.random.default_rng([self.config.seed, stream, u, r])
    return user_batches(self.part.user(u), num, self.config.batch_size, rng)

  def label_weights(self, u: int) -> np.ndarray:
    return label_weights(self.labels[self.part.user(u)], self.config.label_weighting)

  def save_grid(self, path, params, stats, key):
    fn = _generate_fn(self.config.generator, self.config.generator_output)
    labels = np.repeat(np.arange(models.NUM_CLASSES, dtype=np.int32), 10)
    images = np.asarray(fn(params, stats, key, jnp.asarray(labels)))
    plots.save_image_grid(path, images, ncols=10,
                          row_labels=[str(i) for i in range(models.NUM_CLASSES)])

  def finish(self, ema, stats, ledger_entry) -> dict:
    """gen_data.npz from the EMA generator and the method's summary."""
    fn = _generate_fn(self.config.generator, self.config.generator_output)
    k_sample = jax.random.fold_in(self.root, 99)
    gen_x, gen_y = central.sample_generator(fn, ema, stats, k_sample,
                                            self.config.num_gen_samples)
    path = os.path.join(self.dir, "gen_data.npz")
    fileio.atomic_write_npz(path, compressed=True, x=gen_x.astype(np.float32), y=gen_y)
    checkpoint.save_tree(os.path.join(self.dir, "generator.npz"),
                         {"params": ema, "model_state": stats},
                         meta={"generator": self.config.generator,
                               "generator_output": self.config.generator_output,
                               "privacy": ledger_entry})
    self.save_grid(os.path.join(self.dir, "samples_final.png"), ema, stats, k_sample)
    down, up, n_down, n_up = (int(v) for v in self.payload)
    return {"upload_bytes_per_user_per_round": up / max(n_up, 1),
            "download_bytes_per_user_per_round": down / max(n_down, 1),
            "upload_bytes_total": up, "download_bytes_total": down,
            "epsilon": ledger_entry["epsilon"], "delta": self.config.dp.delta,
            "epsilon_vs_server": ledger_entry["epsilon_vs_server"],
            "noise_multiplier": self.settings.noise_multiplier,
            "critic_learning_rate": self.critic_lr,
            "gen_data": path}


_JITTED: dict[tuple, Any] = {}


def _cached(key: tuple, build: Callable[[], Any]) -> Any:
  """Jitted functions reused across runs in one process (no recompiles)."""
  if key not in _JITTED:
    _JITTED[key] = build()
  return _JITTED[key]


@functools.lru_cache(maxsize=None)
def _generate_fn(generator: str, output: str = "sigmoid"):
  gen = models.make_generator(generator, output)
  return jax.jit(lambda p, s, k, y: steps.generate(gen, p, s, k, y))


def _map_users(mode: str, fn: Callable, sharding=None) -> Callable:
  """fn over a list of per-user argument tuples, returning a list of
  per-user outputs: one vmapped call over the stacked users (the user axis
  sharded by `sharding`), or one jitted call per user."""
  if mode == "vmap":
    batched = jax.jit(jax.vmap(fn))

    def run(arg_list):
      args = stack(list(arg_list))
      if sharding is not None:
        args = jax.device_put(args, sharding)
      out = jax.device_get(batched(*args))
      return [jax.tree.map(lambda a: a[i], out) for i in range(len(arg_list))]
    return run
  if mode == "sequential":
    single = jax.jit(fn)
    return lambda arg_list: [jax.device_get(single(*a)) for a in arg_list]
  raise ValueError(f"user_mode={mode!r}: use 'vmap' or 'sequential'.")


class GsWganFederated(_Common):
  """Server generator + per-user discriminators (kept in an on-disk bank)."""

  name = "gswgan"

  def __init__(self, config, workdir, images, labels, part):
    super().__init__(config, workdir, images, labels, part, config.dp.noise_multiplier)
    c = config
    self.clip = c.dp.clip_norm / c.batch_size
    self.bound = sanitizer.user_upload_bound(c.batch_size, self.clip)
    gen, disc, tx, tx_d = self.gen, self.disc, self.tx, self.tx_d
    key = ("gswgan", c.generator, c.generator_output, c.learning_rate,
           self.critic_lr, tuple(c.betas),
           c.gp_weight, c.drift, self.clip, c.dp.noise_multiplier, c.ema_decay, c.user_mode,
           c.num_devices, c.wire)
    fn = functools.partial(user_round, disc=disc, tx=tx_d, gp_weight=c.gp_weight,
                           drift=c.drift, clip_norm=self.clip,
                           noise_multiplier=c.dp.noise_multiplier,
                           upload_dtype=wire_dtype(c.wire))
    self.user_fn = _cached(key + ("user",), lambda: _map_users(
        c.user_mode, fn, distributed.batch_sharded(self.mesh)))
    self.init_disc = _cached(key + ("init",),
                             lambda: jax.jit(lambda k: steps.init_net(k, disc, tx_d)))
    self.generate = _cached(key + ("generate",),
                            lambda: jax.jit(functools.partial(server_generate, gen)))
    self.update = _cached(key + ("update",), lambda: jax.jit(functools.partial(
        server_update, gen=gen, tx=tx, ema_decay=c.ema_decay)))
    template = steps.init_net(jax.random.key(0), self.disc, self.tx_d)
    self.bank = bank_lib.DiscriminatorBank(os.path.join(self.dir, "users"), template,
                                           cache_bytes=c.bank_cache_mb << 20)
    self.warm = _cached(key + ("warm",), lambda: jax.jit(functools.partial(
        steps.iteration, gen=gen, disc=disc, tx_g=tx, tx_d=tx_d,
        num_classes=models.NUM_CLASSES, clip_norm=1.0 / c.batch_size,
        noise_multiplier=0.0, sanitize=False, gp_weight=c.gp_weight, drift=c.drift)))

  def warm_start_users(self) -> None:
    """Local stage 1 (GS-WGAN's warm start, on each user's device): every
    user trains its discriminator non-privately on its own records against
    its own throw-away generator for `user_warmup_iterations` iterations.
    Nothing leaves the device (no payload, no privacy cost); resumable user
    by user (finished discriminators are in the bank as version 0)."""
    c = self.config
    todo = [u for u in range(self.part.num_users) if not self.bank.has(u)]
    if not c.user_warmup_iterations or not todo:
      return
    progress = metrics_lib.Progress(len(todo) * c.user_warmup_iterations,
                                    desc="gswgan local warm-start",
                                    interval=c.progress_interval_s)
    done = 0
    for u in todo:
      k = jax.random.fold_in(jax.random.fold_in(self.root, 8), u)
      g = steps.init_net(jax.random.fold_in(k, 0), self.gen, self.tx)
      d = self.init_disc(jax.random.fold_in(jax.random.fold_in(self.root, 5), u))
      for it in range(c.user_warmup_iterations):
        idx = self.real_batches(u, it, c.n_critic, stream=9)
        g, _, d, m = self.warm(g, g.params, d, jnp.asarray(self._float(idx)),
                               jnp.asarray(self.labels[idx]), jax.random.fold_in(k, it + 1))
        done += 1
        progress.update(done, {"user": u, "wdist": float(m["wasserstein"])})
      self.bank.write_initial(u, jax.device_get(d))
    progress.close(done)

  def user_disc(self, u: int):
    if self.bank.has(u):
      return self.bank.get(u)
    # A user's discriminator starts from its own seed on first participation.
    k = jax.random.fold_in(jax.random.fold_in(self.root, 5), u)
    return jax.device_get(self.init_disc(k))

  def run_round(self, g, ema, r: int, users: np.ndarray):
    c = self.config
    k_round = jax.random.fold_in(jax.random.fold_in(self.root, 6), r)
    k_gen, k_y, k_users = jax.random.split(k_round, 3)
    chunk = c.user_chunk
    if len(users) == 0:  # Nobody sampled: nothing is sent and the server waits.
      return g, ema, {"users": 0}
    # Generated rows are padded to a power of two (zero cotangent beyond the
    # sampled users), so a varying number of users compiles few programs.
    m_pad = -(-(1 << (len(users) - 1).bit_length()) // chunk) * chunk
    labels = np.asarray(jax.random.randint(k_y, (m_pad, c.batch_size), 0, models.NUM_CLASSES))
    fakes = np.asarray(self.generate(g.params, g.model_state, k_gen, jnp.asarray(labels)))
    uploads = np.zeros_like(fakes)
    metrics = []
    for s in range(0, len(users), chunk):
      ids = [int(u) for u in users[s:s + chunk]]
      pad = ids + [ids[-1]] * (chunk - len(ids))  # vmap chunks have a fixed size.
      arg_list = []
      for i, u in enumerate(pad):
        # What user u receives: its samples (float32 or uint8, `wire`) and
        # their labels (uint8 on the wire).
        sent_x = images_to_wire(fakes[min(s + i, m_pad - 1)], c.wire)
        sent_y = labels[min(s + i, m_pad - 1)].astype(np.uint8)
        if i < len(ids):
          self.payload += [sent_x.nbytes + sent_y.nbytes, 0, 1, 0]
        idx = self.real_batches(u, r, c.n_critic)
        arg_list.append((self.user_disc(u), self._float(idx), self.labels[idx],
                         images_from_wire(sent_x), sent_y.astype(np.int32),
                         self.label_weights(u),
                         jax.random.fold_in(k_users, u)))
      outs = self.user_fn(arg_list)
      for i, u in enumerate(ids):
        d, up, m = outs[i]
        self.bank.put(u, d)
        self.payload += [0, np.asarray(up).nbytes, 0, 1]
        uploads[s + i] = np.asarray(up, np.float32)
        metrics.append(m)
    g, ema, sm = self.update(g, ema, k_gen, jnp.asarray(labels), jnp.asarray(uploads),
                             self.denominator)
    row = {"users": len(users), "upload_norm": float(sm["upload_norm"])}
    if metrics:
      row["wasserstein"] = float(np.mean([m["wasserstein"] for m in metrics]))
    return g, ema, row

  def prepare(self):
    self.warm_start_users()

  def init_state(self):
    g = steps.init_net(jax.random.fold_in(self.root, 1), self.gen, self.tx)
    return {"g": g, "ema": g.params}

  def restore(self, state, step):
    self.bank.rollback(step)
    return state

  def before_checkpoint(self, step):
    self.bank.flush(step)

  def round(self, state, r, users):
    self.bank.current_step = r
    g, ema, row = self.run_round(state["g"], state["ema"], r, users)
    return {"g": g, "ema": ema}, row

  def release(self, state):
    return state["ema"], state["g"].model_state


class FedAvgGan(_Common):
  """Server-held generator and discriminator, trained by DP-FedAvg."""

  name = "fedavg_gan"

  def __init__(self, config, workdir, images, labels, part):
    super().__init__(config, workdir, images, labels, part, config.fedavg.noise_multiplier)
    c = config
    self.bound = c.fedavg.clip_norm
    fn = functools.partial(fedavg_user, gen=self.gen, disc=self.disc, tx=self.tx,
                           tx_d=self.tx_d,
                           clip_norm=c.fedavg.clip_norm,
                           noise_multiplier=c.fedavg.noise_multiplier,
                           gp_weight=c.gp_weight, drift=c.drift,
                           upload_dtype=wire_dtype(c.wire))
    key = ("fedavg", c.generator, c.generator_output, c.learning_rate,
           self.critic_lr, tuple(c.betas),
           c.gp_weight, c.drift, c.fedavg.clip_norm, c.fedavg.noise_multiplier,
           c.fedavg.server_lr, c.ema_decay, c.user_mode, c.num_devices, c.wire)
    self.user_fn = _cached(key + ("user",), lambda: _map_users(
        c.user_mode, fn, distributed.batch_sharded(self.mesh)))
    gen, disc = self.gen, self.disc
    lr = c.fedavg.server_lr

    def apply(g, d, ema, total, denominator, step):
      g_params = jax.tree.map(lambda p, u: p + lr * u / denominator, g.params, total["g"])
      d_params = jax.tree.map(lambda p, u: p + lr * u / denominator, d.params, total["d"])
      y = jnp.zeros((2,), jnp.int32)
      d_stats = refresh_spectral_norm(disc, d_params, d.model_state,
                                      (jnp.zeros((2, 28, 28, 1)), y))
      g_stats = refresh_spectral_norm(gen, g_params, g.model_state,
                                      (jnp.zeros((2, models.LATENT_DIM)), y))
      g = g.replace(params=g_params, model_state=g_stats, step=g.step + 1)
      d = d.replace(params=d_params, model_state=d_stats, step=d.step + 1)
      ema = steps.ema_update(ema, g_params, step, c.ema_decay)
      return g, d, ema

    self.apply = _cached(key + ("apply",), lambda: jax.jit(apply))

  def init_state(self):
    g = steps.init_net(jax.random.fold_in(self.root, 1), self.gen, self.tx)
    d = steps.init_net(jax.random.fold_in(self.root, 2), self.disc, self.tx_d)
    return {"g": g, "d": d, "ema": g.params}

  def prepare(self):
    pass

  def restore(self, state, step):
    return state

  def before_checkpoint(self, step):
    pass

  def round(self, state, r, users):
    c = self.config
    g, d, ema = state["g"], state["d"], state["ema"]
    if len(users) == 0:
      return state, {"users": 0}
    k_users = jax.random.fold_in(jax.random.fold_in(self.root, 7), r)
    # What a user receives: both networks' weights and spectral-norm vectors
    # in the wire's float dtype (optimizer states stay on the server); the
    # user trains from them and its update is relative to what it received.
    local = {"g": (g.params, g.model_state), "d": (d.params, d.model_state)}
    sent = tree_to_wire(local, c.wire)
    down = nbytes(sent)
    got = tree_from_wire(sent, local)  # Only the dtypes of `local` are read.
    g_user = g.replace(params=got["g"][0], model_state=got["g"][1])
    d_user = d.replace(params=got["d"][0], model_state=got["d"][1])
    total = jax.tree.map(np.zeros_like, jax.device_get({"g": g.params, "d": d.params}))
    chunk = c.user_chunk
    metrics = []
    for s in range(0, len(users), chunk):
      ids = [int(u) for u in users[s:s + chunk]]
      pad = ids + [ids[-1]] * (chunk - len(ids))
      arg_list = []
      for u in pad:
        idx = self.real_batches(u, r, c.fedavg.local_steps * c.n_critic).reshape(
            c.fedavg.local_steps, c.n_critic, c.batch_size)
        arg_list.append((g_user, d_user, self._float(idx), self.labels[idx],
                         jax.random.fold_in(k_users, u)))
      outs = self.user_fn(arg_list)
      for i in range(len(ids)):
        up, m = outs[i]
        self.payload += [down, nbytes(up), 1, 1]
        total = jax.tree.map(lambda t, a: t + np.asarray(a, np.float32), total, up)
        metrics.append(m)
    g, d, ema = self.apply(g, d, ema, total, self.denominator, g.step)
    row = {"users": len(users)}
    if metrics:
      row["wasserstein"] = float(np.mean([m["wasserstein"] for m in metrics]))
    return {"g": g, "d": d, "ema": ema}, row

  def release(self, state):
    return state["ema"], state["g"].model_state


def _train_method(runner: _Common, rounds: int) -> dict:
  """The round loop of one method with checkpoints, ledger and resume."""
  c = runner.config
  ckpt_dir = os.path.join(runner.dir, "checkpoints")
  state = runner.init_state()
  participations = np.zeros(runner.part.num_users, np.int64)
  start = checkpoint.latest_step(ckpt_dir)
  ledger = user_level.UserLedger(runner.dir, runner.settings, runner.bound,
                                 c.dp.target_epsilon or None)
  # A resumed run keeps its privacy settings and may extend, not shorten.
  ledger.verify_resume(start or 0, planned=rounds)
  if start is not None:
    (state, participations, payload), _, start = checkpoint.restore(
        ckpt_dir, (state, participations, runner.payload))
    participations, runner.payload = np.asarray(participations), np.asarray(payload)
    state = runner.restore(state, start)
    print(f"[{runner.name}] resuming from round {start}.")
  start = start or 0
  t_prepare = time.time()
  runner.prepare()
  prepare_s = time.time() - t_prepare
  writer = metrics_lib.MetricWriter(runner.dir, resume_step=start or None)
  progress = metrics_lib.Progress(rounds, start, desc=f"{runner.name} rounds",
                                  interval=c.progress_interval_s)
  k_sample = jax.random.fold_in(runner.root, 98)
  t0 = time.time()
  r = start
  for r in range(start + 1, rounds + 1):
    users = runner.round_users(r)
    participations[users] += 1
    state, row = runner.round(state, r, users)
    if r % c.log_every_rounds == 0 or r == rounds:
      writer.write(r, row)
      progress.update(r, {k: v for k, v in row.items() if k in ("users", "wasserstein")})
    if r % c.sample_every_rounds == 0 or r == rounds:
      ema, stats = runner.release(state)
      runner.save_grid(os.path.join(runner.dir, f"samples_{r:06d}.png"), ema, stats, k_sample)
    if r % c.checkpoint_every_rounds == 0 or r == rounds:
      entry = ledger.record(r, int(participations.max()))  # Ledger first (never under-reports).
      writer.write(r, {"epsilon": entry["epsilon"]})
      runner.before_checkpoint(r)
      checkpoint.save(ckpt_dir, r, (state, participations, runner.payload))
      save_curves(os.path.join(runner.dir, CURVES_PNG), {runner.name: runner.dir})
  progress.close(r)
  entry = ledger.record(rounds, int(participations.max()))
  ema, stats = runner.release(state)
  out = runner.finish(ema, stats, entry)
  out["seconds_this_run"] = time.time() - t0 + prepare_s
  out["warmup_seconds_this_run"] = prepare_s
  out["max_participations"] = int(participations.max())
  return out


CURVES_PNG = "curves.png"
_EPSILON_PANEL = "epsilon (user level)"


def curve_panels(records: dict[str, list[dict]], window: int = 10) -> dict:
  """Training curves from each method's metrics.jsonl records (`records`:
  {method: rows}), as {panel: {method: (rounds, values)}}.

  "critic Wasserstein estimate": the mean over a logged round's sampled users
  of their critics' estimate, taken at the logged rounds that had users and
  smoothed by a trailing mean over up to `window` such points (the raw value
  swings with which users were drawn). "epsilon (user level)": the ledger's
  epsilon at each checkpoint. A method without rows of a kind is left out of
  that panel.
  """
  wdist, eps = {}, {}
  for m, rows in records.items():
    w = [(r["step"], r["wasserstein"]) for r in rows if "wasserstein" in r]
    if w:
      x, y = np.array(w, np.float64).T
      c = np.cumsum(np.concatenate([[0.0], y]))
      hi = np.arange(1, len(y) + 1)
      lo = np.maximum(hi - window, 0)
      wdist[m] = (x, (c[hi] - c[lo]) / (hi - lo))
    e = [(r["step"], r["epsilon"]) for r in rows if "epsilon" in r]
    if e:
      eps[m] = tuple(np.array(e, np.float64).T)
  return {f"critic Wasserstein estimate (mean of {window} logged rounds)": wdist,
          _EPSILON_PANEL: eps}


def save_curves(path: str, method_dirs: dict[str, str]) -> None:
  """Plots `curve_panels` of the methods whose directory has a metrics.jsonl
  (written atomically; nothing when none has)."""
  records = {m: metrics_lib.read_metrics(os.path.join(d, "metrics.jsonl"))
             for m, d in method_dirs.items()
             if os.path.exists(os.path.join(d, "metrics.jsonl"))}
  if not records:
    return
  panels = {k: v for k, v in curve_panels(records).items() if v}
  if panels:
    plots.save_xy_panels(path, panels, xlabel="round", logy=(_EPSILON_PANEL,),
                         title=", ".join(records))


def planned_rounds(config, num_users: int) -> int:
  """Rounds to run: config.rounds, or fewer where dp.target_epsilon binds
  (for the GS-WGAN noise multiplier).

  Raises:
    user_level.PrivacyBudgetError: the target cannot be met even for one round.
  """
  target = config.dp.target_epsilon
  if not target or target <= 0:
    return config.rounds
  s = dp_settings(config, config.dp.noise_multiplier, num_users)
  if s.noise_multiplier == 0:
    raise user_level.PrivacyBudgetError(
        f"dp.target_epsilon={target} but dp.noise_multiplier=0 gives no privacy; set a "
        "noise multiplier or dp.target_epsilon=0.")
  t = user_level.max_rounds(s, target, config.rounds)
  if t == 0:
    raise user_level.PrivacyBudgetError(
        f"dp.target_epsilon={target} cannot be met: one round already costs epsilon="
        f"{user_level.compute_epsilon(s, 1):.4g}. Raise dp.noise_multiplier or lower "
        "the sampling rate.")
  return t


def _check_config(config) -> None:
  for m in config.methods:
    if m not in METHODS:
      raise ValueError(f"methods contains {m!r}; use a subset of {METHODS}.")
  if config.batch_size < 1 or config.n_critic < 1 or config.user_chunk < 1:
    raise ValueError("batch_size, n_critic and user_chunk must be >= 1.")
  check_label_weighting(config.label_weighting)
  for m in METHODS:
    critic_learning_rate(config, m)
  check_wire(config.wire)
  models.check_output(config.generator_output)
  if config.eval_suite not in ("", "fast", "full"):
    raise ValueError(f"eval_suite={config.eval_suite!r}; use '' (IS / FID / label "
                     "accuracy only), 'fast' (the suite's quick look) or 'full'.")
  if config.eval_suite:
    from jaxtiny.eval import cnn  # pylint: disable=g-import-not-at-top
    need = cnn.cnn_config("mnist").batch_size
    if config.num_gen_samples < need:
      raise ValueError(f"num_gen_samples={config.num_gen_samples} is below the {need} "
                       "samples the evaluation suite's CNN trains on per batch; raise it "
                       "or set --config.eval_suite=''.")
  n_dev = distributed.data_mesh(config.num_devices).devices.size
  if config.user_mode == "vmap" and config.user_chunk % n_dev:
    raise ValueError(f"user_chunk={config.user_chunk} must be divisible by the {n_dev} "
                     "devices the users are sharded over.")


def _reference_dataset(config) -> str:
  """The dataset whose reference classifier and test split score a run
  (Federated EMNIST digits are scored with MNIST's)."""
  return "mnist" if config.dataset == "fed_emnist" else config.dataset


def unscorable_warning(config: ml_collections.ConfigDict) -> Optional[str]:
  """What a run that will score its generators is missing, said before it
  trains (else it would train for an hour, then skip the scores); None when
  nothing is missing or nothing is scored. Rerunning the same command after
  training the classifier scores the finished run without training more."""
  if not (config.evaluate or config.eval_suite):
    return None
  from jaxtiny.classifier import reference  # pylint: disable=g-import-not-at-top
  dataset = _reference_dataset(config)
  path = config.eval_classifier or reference.default_path(dataset, config.data_dir or None)
  if os.path.isfile(path):
    return None
  return (f"WARNING: no reference classifier at {path}: this run will train, then skip "
          f"its scores (IS / FID / label accuracy and the evaluation suite). Train it first:\n"
          f"  {reference.train_command(dataset)}\n"
          f"(or set JAXTINY_DATA / --config.data_dir to where it is, or "
          f"--config.eval_classifier=PATH); rerunning this command afterwards scores the "
          f"finished run without training it again.")


def _check_not_shortened(workdir: str, methods, rounds: int) -> None:
  """Refuses, before anything is written, to resume a method whose checkpoint
  is past the planned rounds (its ledger check in `_train_method` says the
  same; this one runs before config.json is replaced)."""
  for m in methods:
    start = checkpoint.latest_step(os.path.join(workdir, m, "checkpoints"))
    if start is not None and start > rounds:
      raise accounting.LedgerMismatchError(
          f"{m} in {workdir} has a checkpoint at round {start}, past the {rounds} rounds "
          f"this config plans: its model has had {start} private rounds, and releasing it "
          f"with the privacy of {rounds} would under-report epsilon. Use "
          f"--config.rounds={start} or more (it extends the run), or a new --workdir.")


def _check_same_critic_rates(workdir: str, config) -> None:
  """Refuses, before anything is written, to resume a method whose critics
  trained at another rate (from the workdir's config.json, the last run's):
  the `cpu` variant's GS-WGAN default changed from 1e-4 to 2e-4 in session
  41 and to 3e-4 in session 43, and a run extended with the same command
  would otherwise switch silently."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = ml_collections.ConfigDict(json.load(f))
  for m in config.methods:
    if checkpoint.latest_step(os.path.join(workdir, m, "checkpoints")) is None:
      continue
    was, now = critic_learning_rate(old, m), critic_learning_rate(config, m)
    if was != now:
      flag = "fedavg.critic_learning_rate" if m == "fedavg_gan" else "critic_learning_rate"
      raise ValueError(
          f"{m} in {workdir} was trained with its critics at Adam rate {was:g} and this "
          f"config sets {now:g}. Pass --config.{flag}={was:g} to continue the run as it "
          "was (the cpu variant's GS-WGAN default was 1e-4 before session 41 and 2e-4 in "
          "sessions 41-42), or use a new --workdir.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the configured methods on one partition; writes results.json."""
  _check_config(config)
  warning = unscorable_warning(config)
  if warning:
    print(warning, flush=True)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  images, labels, part = load_users(config)
  rounds = planned_rounds(config, part.num_users)  # Fails before training or writing.
  _check_not_shortened(workdir, config.methods, rounds)
  _check_same_critic_rates(workdir, config)
  fileio.atomic_write_bytes(os.path.join(workdir, "config.json"),
                            config.to_json_best_effort(indent=2).encode())
  part_path = os.path.join(workdir, "partition.npz")
  if os.path.exists(part_path):
    if not fed_data.Partition.load(part_path).same_as(part):
      raise RuntimeError(f"{part_path} does not match this config's partition; "
                         "use a new --workdir.")
  else:
    part.save(part_path)
  described = part.describe(labels)
  print(f"federated GS-WGAN on {config.dataset}: {described}")
  results: dict[str, Any] = {"partition": config.partition if config.dataset != "fed_emnist"
                             else "fed_emnist", "partition_stats": described,
                             "users": part.num_users, "rounds": rounds,
                             "dataset": config.dataset, "generator": config.generator,
                             "generator_output": config.generator_output,
                             "sampling": config.sampling,
                             "sampling_probability":
                                 dp_settings(config, 1.0, part.num_users).sampling_probability,
                             "batch_size": config.batch_size, "wire": config.wire,
                             "n_critic": config.n_critic, "seed": config.seed}
  runners = {"gswgan": GsWganFederated, "fedavg_gan": FedAvgGan}
  for m in config.methods:
    runner = runners[m](config, workdir, images, labels, part)
    results[m] = _train_method(runner, rounds)
    quality = None
    if config.eval_suite:
      results[m]["eval_suite"], quality = _suite(config, results[m]["gen_data"])
    if config.evaluate:
      # The suite has scored IS / FID / label accuracy already (its protocol's
      # sample counts, recorded with them): not computed twice.
      results[m]["scores"] = quality or _scores(config, results[m]["gen_data"])
    fileio.atomic_write_json(os.path.join(workdir, "results.json"), results)
  if len(config.methods) == 2:
    a, b = results["gswgan"], results["fedavg_gan"]
    results["payload_ratio_fedavg_over_gswgan"] = (
        (b["upload_bytes_per_user_per_round"] + b["download_bytes_per_user_per_round"])
        / (a["upload_bytes_per_user_per_round"] + a["download_bytes_per_user_per_round"]))
  fileio.atomic_write_json(os.path.join(workdir, "results.json"), results)
  # Every method trained in this workdir so far, on one figure.
  save_curves(os.path.join(workdir, CURVES_PNG),
              {m: os.path.join(workdir, m) for m in METHODS})
  _print_table(results, config.methods)
  return results


def _scores(config, gen_path: str) -> dict:
  """The evaluation suite's sample-quality scores (IS, FID on the reference
  classifier's features, label accuracy) of a generated set."""
  from jaxtiny.eval import generated as generated_lib  # pylint: disable=g-import-not-at-top
  from jaxtiny.eval import scores  # pylint: disable=g-import-not-at-top
  gen = generated_lib.load_generated(gen_path)
  n = min(config.eval_samples, len(gen.y))
  dataset = _reference_dataset(config)
  try:
    out = scores.sample_quality(gen, dataset, config.data_dir or None, is_samples=n,
                                fid_samples=n, classifier_path=config.eval_classifier or None,
                                log=lambda s: None)
  except FileNotFoundError as e:  # No reference classifier trained yet.
    print(f"scores skipped: {e}")
    return {"skipped": str(e)}
  out["reference_dataset"] = dataset
  return out


SUITE_KEYS = ("is_mean", "fid_lenet", "label_acc", "label_acc_per_class", "label_misread",
              "mlp_acc", "cnn_acc", "avg_acc", "calibrated_acc", "intra_class_l2",
              "real_intra_class_l2", "fast")


def _suite(config, gen_path: str) -> tuple[dict, Optional[dict]]:
  """The GS-WGAN paper's evaluation suite on a method's generated set.

  Classifiers trained on the generated samples, tested on the real test split
  (MLP, CNN, the average of the scikit-learn models, and that average over
  the real-data average), plus IS and FID; `eval_suite="fast"` is the suite's
  documented quick look, `"full"` the paper's protocol. Written to
  `<method>/eval/eval.json` (resumable: the CNN and the scikit-learn rows pick
  up where an interrupted run stopped). Returns the headline columns and the
  suite's sample-quality scores in `_scores`' format (None when skipped).
  """
  from jaxtiny.eval import generated as generated_lib  # pylint: disable=g-import-not-at-top
  from jaxtiny.eval import suite  # pylint: disable=g-import-not-at-top
  # The method's directory, so that the record carries its ledger's epsilon.
  gen = generated_lib.load_generated(os.path.dirname(gen_path))
  dataset = _reference_dataset(config)
  out_dir = os.path.join(os.path.dirname(gen_path), "eval")
  try:
    record = suite.evaluate(gen, dataset, out_dir, fast=config.eval_suite == "fast",
                            data_dir=config.data_dir or None,
                            classifier_path=config.eval_classifier or None)
  except FileNotFoundError as e:  # No reference classifier trained yet.
    print(f"evaluation suite skipped: {e}")
    return {"skipped": str(e)}, None
  out = {k: record[k] for k in SUITE_KEYS}
  out["test_split"] = dataset
  out["eval_json"] = os.path.join(out_dir, "eval.json")
  out["background"] = _background(gen, dataset, config.data_dir or None)
  quality = {k: record[k] for k in ("is_mean", "is_std", "fid_lenet", "label_acc",
                                    "is_samples", "fid_samples")}
  quality["reference_dataset"] = dataset
  return out, quality


def _background(gen, dataset: str, data_dir: Optional[str]) -> dict:
  """What the generator draws where the real test digits are blank
  (`metrics.background_stats`: exact-zero share, mean value, class signal),
  kept in the record because a faint class-dependent background is what
  GaussianNB and RandomForest trained on generated samples key on. A dataset
  without blank pixels (no test-set mean below 0.01) records why instead."""
  from jaxtiny.eval import suite  # pylint: disable=g-import-not-at-top
  try:
    return suite.background_on_test_split(gen, dataset, data_dir)
  except ValueError as e:
    return {"skipped": str(e)}


def _fmt(x) -> str:
  if isinstance(x, str):
    return x
  return f"{x:.4g}" if isinstance(x, float) and math.isfinite(x) else str(x)


def _print_table(results: dict, methods) -> None:
  print(f"\npartition {results['partition']}, {results['users']} users, "
        f"{results['rounds']} rounds")
  suite_cols = any("eval_suite" in results[m] and "skipped" not in results[m]["eval_suite"]
                   for m in methods)
  head = "| method | IS | FID (LeNet) | label acc | epsilon | upload B/user/round " \
         "| download B/user/round |"
  if suite_cols:
    head += " MLP | CNN | Avg | Calibrated | within-class L2 |"
  print(head)
  print("|---" * (head.count("|") - 1) + "|")
  for m in methods:
    r = results[m]
    s = r.get("scores", {})
    row = (f"| {m} | {_fmt(s.get('is_mean', '-'))} | {_fmt(s.get('fid_lenet', '-'))} | "
           f"{_fmt(s.get('label_acc', '-'))} | {_fmt(r['epsilon'])} | "
           f"{r['upload_bytes_per_user_per_round']:.4g} | "
           f"{r['download_bytes_per_user_per_round']:.4g} |")
    if suite_cols:
      e = r.get("eval_suite", {})
      row += "".join(f" {_fmt(e.get(k, '-'))} |"
                     for k in ("mlp_acc", "cnn_acc", "avg_acc", "calibrated_acc",
                               "intra_class_l2"))
    print(row)
  real = [results[m]["eval_suite"].get("real_intra_class_l2") for m in methods
          if "eval_suite" in results[m]]
  if suite_cols and real and real[0] is not None:
    print(f"within-class L2: mean pixel distance between two samples of a class "
          f"(0 = one image per class); real training set {real[0]:.3g}")
  for m in methods:
    bg = results[m].get("eval_suite", {}).get("background")
    if bg and "skipped" not in bg:
      print(f"{m} on the real test set's blank pixels: mean {bg['gen_background_mean']:.3g} "
            f"(real {bg['real_background_mean']:.3g}), class signal {bg['class_signal']:.3g}; "
            f"exact zeros {100 * bg['gen_exact_zero']:.1f} % of all pixels "
            f"(real {100 * bg['real_exact_zero']:.1f} %)")
