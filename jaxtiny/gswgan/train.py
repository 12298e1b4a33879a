"""GS-WGAN trainer: stage 1 (discriminator bank), stage 2 (private generator).

`train_and_evaluate(config, workdir)`:

1. Shards: the training set is permuted once (seeded; saved as `shards.npy`)
   and split into K disjoint shards.
2. Stage 1: each discriminator is warm-started non-privately on its own shard
   against its own throw-away generator, `warmup_chunk` discriminators at a
   time under `vmap`, the chunk axis sharded over local devices. Finished
   discriminators go to the on-disk bank, so stage 1 resumes chunk by chunk.
3. Stage 2: each step draws one discriminator uniformly, runs `n_critic`
   critic steps on batches from its shard, then one generator step whose only
   input from the discriminator is the per-example sanitized gradient with
   respect to the generated samples. The EMA generator is the released model.
   Privacy is accounted on the host; training stops before a configured
   target epsilon would be exceeded.
4. Output: `gen_data.npz` with samples from the EMA generator (equal counts
   per class, values in [0, 1]) for the evaluation suite.
"""

from __future__ import annotations

import functools
import io
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtiny import data
from jaxtiny import fileio
from jaxtiny.gswgan import bank as bank_lib
from jaxtiny.gswgan import models
from jaxtiny.gswgan import steps
from jaxtiny.privacy import accounting
from jaxtiny.train import checkpoint
from jaxtiny.train import distributed
from jaxtiny.train import metrics as metrics_lib
from jaxtiny.train import plots


def make_shards(num_examples: int, num_shards: int, seed: int) -> np.ndarray:
  """Disjoint shards [K, N // K] of a seeded permutation of the examples."""
  if num_shards < 1 or num_shards > num_examples:
    raise ValueError(f"num_discriminators={num_shards} must be in [1, {num_examples}].")
  per = num_examples // num_shards
  perm = np.random.default_rng([seed, 7]).permutation(num_examples)
  return perm[:per * num_shards].reshape(num_shards, per)


def shard_batches(shard: np.ndarray, n_critic: int, batch_size: int,
                  rng: np.random.Generator) -> np.ndarray:
  """n_critic batches of example indices from one shard (without replacement
  within a batch; with replacement across batches when the shard is small)."""
  if batch_size > len(shard):
    raise ValueError(f"batch_size={batch_size} exceeds the shard size {len(shard)}; "
                     "use fewer discriminators or a smaller batch.")
  return np.stack([rng.choice(shard, batch_size, replace=False) for _ in range(n_critic)])


def _settings(config) -> accounting.DpSettings:
  return accounting.DpSettings(
      noise_multiplier=config.dp.noise_multiplier,
      num_discriminators=config.num_discriminators,
      batch_size=config.batch_size, delta=config.dp.delta,
      accountant=config.dp.accountant)


def resolve_noise(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """With dp.calibrate, a copy of `config` whose dp.noise_multiplier is the
  smallest sigma meeting dp.target_epsilon after num_steps steps (so the
  whole run fits the budget); otherwise `config` itself."""
  if not config.dp.calibrate:
    return config
  if not config.dp.target_epsilon or config.dp.target_epsilon <= 0:
    raise accounting.PrivacyBudgetError(
        "dp.calibrate=True needs dp.target_epsilon > 0 (the epsilon to calibrate to).")
  sigma = accounting.calibrate_noise(
      config.dp.target_epsilon, config.dp.delta, config.num_discriminators,
      config.batch_size, config.num_steps, config.dp.accountant)
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.dp.noise_multiplier = sigma
  return resolved.lock()


def planned_steps(config) -> int:
  """Generator steps to run: num_steps, or fewer if the target epsilon binds.

  Raises:
    accounting.PrivacyBudgetError: the target cannot be met even for one step.
  """
  target = config.dp.target_epsilon
  if not target or target <= 0:
    return config.num_steps
  s = _settings(config)
  if s.noise_multiplier == 0:
    raise accounting.PrivacyBudgetError(
        f"dp.target_epsilon={target} but dp.noise_multiplier=0 gives no privacy; "
        "set a noise multiplier (python -m jaxtiny.privacy.accounting "
        "--target_epsilon=... prints one) or set dp.target_epsilon=0.")
  t = accounting.max_steps(s, target, config.num_steps)
  if t == 0:
    eps1 = accounting.compute_epsilon(s.accountant, s.noise_multiplier,
                                      s.num_discriminators, s.batch_size, 1, s.delta)
    raise accounting.PrivacyBudgetError(
        f"dp.target_epsilon={target} cannot be met: a single generator step "
        f"already costs epsilon={eps1:.4g} ({s.accountant} accountant). Raise "
        "dp.noise_multiplier or the number of discriminators.")
  return t


def warmup_mode(config) -> str:
  """The stage-1 path `config.warmup_mode` names; "auto" is "sequential" on
  one device and "vmap" (the chunk sharded over the devices) on several. On
  one H100 a sequential pair-iteration took 13 ms against 18 ms per member of
  a vmapped chunk; on this CPU sequential is ~2.8x faster (BUILD_NOTES)."""
  mode = config.warmup_mode
  if mode == "auto":
    return "vmap" if distributed.data_mesh(config.num_devices).devices.size > 1 else "sequential"
  if mode not in ("vmap", "sequential", "unrolled"):
    raise ValueError(f"warmup_mode={mode!r}: use 'auto', 'vmap', 'sequential' or 'unrolled'.")
  return mode


def _networks_key(config) -> tuple:
  return (config.generator, config.learning_rate, tuple(config.betas),
          config.dp.clip_norm, config.batch_size, config.dp.noise_multiplier,
          config.gp_weight, config.drift, warmup_mode(config), config.ema_decay)


_NETWORKS: dict[tuple, "Networks"] = {}


def get_networks(config) -> "Networks":
  """Networks for `config`, reused across runs in one process (no recompiles)."""
  key = _networks_key(config)
  if key not in _NETWORKS:
    _NETWORKS[key] = Networks(config)
  return _NETWORKS[key]


def map_members(fn, *args):
  """fn applied to each member of stacked pytrees (leading axis), restacked:
  a loop of calls, or, traced under jit, one program holding every call."""
  n = jax.tree.leaves(args)[0].shape[0]
  outs = [fn(*jax.tree.map(lambda a: a[i], args)) for i in range(n)]
  return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)


class Networks:
  """The static pieces of a run: networks, optimizers, jitted steps."""

  def __init__(self, config):
    self.gen = models.make_generator(config.generator)
    self.disc = models.Discriminator()
    self.tx = steps.make_optimizer(config.learning_rate, *config.betas)
    common = dict(gen=self.gen, disc=self.disc, tx_g=self.tx, tx_d=self.tx,
                  num_classes=models.NUM_CLASSES, clip_norm=config.dp.clip_norm / config.batch_size,
                  gp_weight=config.gp_weight, drift=config.drift)
    self.private_iteration = jax.jit(functools.partial(
        steps.iteration, noise_multiplier=config.dp.noise_multiplier,
        sanitize=True, ema_decay=config.ema_decay, **common))
    warm = functools.partial(steps.iteration, noise_multiplier=0.0,
                             sanitize=False, **common)
    # Stage 1 trains a chunk of (generator, discriminator, shard) triples.
    # "vmap": the stacked chunk in one call, shardable over devices (per-member
    # weights become grouped convolutions: slow on CPU, and 18 ms per pair vs
    # 8 ms for one pair's step on an H100). "unrolled": one compiled program
    # holding each member's own step. "sequential": the chunk as a list of
    # per-member states, `warm_gather` called on each; it keeps each member's
    # shard on the device for the whole chunk and gathers the batches inside
    # the step (`pos`: positions in the shard), so no batch crosses from the
    # host per iteration.
    mode = warmup_mode(config)
    self.warm_gather = jax.jit(
        lambda g, ema, d, shard_x, shard_y, pos, key: warm(g, ema, d, shard_x[pos],
                                                           shard_y[pos], key))
    if mode == "vmap":
      self.warm_iteration = jax.jit(jax.vmap(warm))
    elif mode == "unrolled":
      self.warm_iteration = jax.jit(functools.partial(map_members, warm))
    else:
      self.warm_iteration = None
    gen, disc, tx = self.gen, self.disc, self.tx

    def init_pair(key, k):
      return (steps.init_net(jax.random.fold_in(key, 2 * k), gen, tx),
              steps.init_net(jax.random.fold_in(key, 2 * k + 1), disc, tx))

    # All of a chunk's (throw-away generator, discriminator) pairs in one
    # compiled call instead of 2 x chunk op-by-op initialisations (on an H100,
    # those and the bank writes took ~20 s per chunk of 50; BUILD_NOTES).
    self.init_pairs = jax.jit(jax.vmap(init_pair, in_axes=(None, 0)))
    self.init_pair = jax.jit(init_pair)  # The sequential path: no slicing after.
    self.generate = jax.jit(lambda p, s, k, y: steps.generate(gen, p, s, k, y))


def _to_float(images: np.ndarray) -> np.ndarray:
  return images.astype(np.float32) / 255.0


def warm_start_bank(config, nets: Networks, bank: bank_lib.DiscriminatorBank,
                    images: np.ndarray, labels: np.ndarray, shards: np.ndarray,
                    key: jax.Array, writer: metrics_lib.MetricWriter) -> None:
  """Stage 1: trains every missing discriminator of the bank, chunk by chunk."""
  k_total = config.num_discriminators
  missing = [k for k in range(k_total) if not bank.has(k)]
  if not missing:
    return
  mesh = distributed.data_mesh(config.num_devices)
  n_dev = mesh.devices.size
  chunk = config.warmup_chunk
  if chunk % n_dev:
    raise ValueError(f"warmup_chunk={chunk} must be divisible by the {n_dev} devices.")
  sharded = distributed.batch_sharded(mesh)
  chunks = [missing[i:i + chunk] for i in range(0, len(missing), chunk)]
  total = len(chunks) * config.warmup_iterations
  progress = metrics_lib.Progress(total, desc="stage 1 (bank warm-start)",
                                  interval=config.progress_interval_s)
  done = 0
  sequential = nets.warm_iteration is None
  member_keys = jax.jit(jax.vmap(
      lambda k, it: jax.random.fold_in(jax.random.fold_in(key, 10_000_019 + k), it),
      in_axes=(0, None)))
  positions = np.arange(shards.shape[1])
  for ids in chunks:
    ids_padded = ids + [ids[-1]] * (chunk - len(ids))  # Pad the last chunk.
    t_init = time.time()
    if sequential:
      pairs = [nets.init_pair(key, k) for k in ids]
      g, d = [p[0] for p in pairs], [p[1] for p in pairs]
      ema = [m.params for m in g]  # Unused for throw-away generators.
      shard_x = [jnp.asarray(_to_float(images[shards[k]])) for k in ids]
      shard_y = [jnp.asarray(labels[shards[k]]) for k in ids]
    else:
      g, d = jax.device_put(nets.init_pairs(key, jnp.asarray(ids_padded, jnp.int32)), sharded)
      ema = g.params  # Unused for throw-away generators, but the step returns one.
    t0 = time.time()
    for it in range(config.warmup_iterations):
      # Positions within each member's shard, [chunk, n_critic, B].
      pos = np.stack([shard_batches(positions, config.n_critic, config.batch_size,
                                    np.random.default_rng([config.seed, 1, k, it]))
                      for k in ids_padded])
      keys = member_keys(jnp.asarray(ids_padded, jnp.int32), it)
      if sequential:
        wdist = []
        for i in range(len(ids)):
          g[i], ema[i], d[i], m = nets.warm_gather(g[i], ema[i], d[i], shard_x[i], shard_y[i],
                                                   pos[i], keys[i])
          wdist.append(m["wasserstein"])
      else:
        idx = shards[np.asarray(ids_padded)[:, None, None], pos]
        x = jax.device_put(_to_float(images[idx]), sharded)
        y = jax.device_put(labels[idx], sharded)
        g, ema, d, m = nets.warm_iteration(g, ema, d, x, y, keys)
        wdist = m["wasserstein"][:len(ids)]
      done += 1
      if progress.due() or it == config.warmup_iterations - 1:
        # Reading the metric waits for the device: only when it is printed.
        wmean = float(jnp.mean(jnp.stack(wdist) if sequential else wdist))
        progress.update(done, {"chunk": f"{ids[0]}-{ids[-1]}", "wdist": wmean})
    t_train = time.time()
    if sequential:  # Device arrays: the bank's writer thread fetches them.
      for i, k in enumerate(ids):
        bank.write_initial(k, d[i])
    else:
      d_host = jax.device_get(d)
      for i, k in enumerate(ids):
        bank.write_initial(k, jax.tree.map(lambda a: a[i], d_host))
    writer.write(0, {"stage1_chunk": f"{ids[0]}-{ids[-1]}",
                     "stage1_chunk_s": t_train - t0,
                     "stage1_init_s": t0 - t_init,
                     "stage1_write_s": time.time() - t_train,
                     "stage1_wasserstein": wmean})
  t_wait = time.time()
  bank.wait()  # The last chunk's files (earlier ones were written while training).
  writer.write(0, {"stage1_final_write_wait_s": time.time() - t_wait})
  progress.close(done)


def sample_generator(fn, params, stats, key: jax.Array, num: int,
                     batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
  """`num` samples (equal counts per class, rounded up) from `fn`, a jitted
  `(params, stats, key, labels) -> images`."""
  per_class = math.ceil(num / models.NUM_CLASSES)
  labels = np.repeat(np.arange(models.NUM_CLASSES, dtype=np.int32), per_class)[:num]
  out = []
  for i in range(0, num, batch):
    y = labels[i:i + batch]
    pad = batch - len(y)
    y_in = np.concatenate([y, np.zeros(pad, np.int32)]) if pad else y
    out.append(np.asarray(fn(params, stats, jax.random.fold_in(key, i), y_in))[:len(y)])
  return np.concatenate(out), labels


def _save_grid(path, fn, params, stats, key):
  labels = np.repeat(np.arange(models.NUM_CLASSES, dtype=np.int32), 10)
  images = np.asarray(fn(params, stats, key, jnp.asarray(labels)))
  plots.save_image_grid(path, images, ncols=10,
                        row_labels=[str(i) for i in range(models.NUM_CLASSES)])


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs GS-WGAN as configured; returns the final summary (also results.json)."""
  distributed.maybe_initialize_distributed()
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  config = resolve_noise(config)
  total_steps = planned_steps(config)  # Fails before any work if the budget is impossible.
  settings = _settings(config)
  ledger = accounting.PrivacyLedger(workdir, settings,
                                    config.dp.target_epsilon or None)
  # A resumed run must keep the privacy settings its ledger recorded.
  ledger.verify_resume(checkpoint.latest_step(os.path.join(workdir, "checkpoints")) or 0,
                       planned=total_steps)
  fileio.atomic_write_bytes(os.path.join(workdir, "config.json"),
                            config.to_json_best_effort(indent=2).encode())
  images, labels = data.load(config.dataset, "train", config.data_dir)

  shards_path = os.path.join(workdir, "shards.npy")
  shards = make_shards(len(labels), config.num_discriminators, config.seed)
  if os.path.exists(shards_path):
    if not np.array_equal(np.load(shards_path), shards):
      raise RuntimeError(f"{shards_path} does not match this config's shards; "
                         "use a new --workdir.")
  else:
    buf = io.BytesIO()
    np.save(buf, shards)
    fileio.atomic_write_bytes(shards_path, buf.getvalue())

  root = jax.random.key(config.seed)
  k_bank, k_gen, k_loop, k_sample = jax.random.split(root, 4)
  nets = get_networks(config)
  eps_planned = ledger.epsilon(total_steps)
  print(f"GS-WGAN on {config.dataset}: K={config.num_discriminators}, "
        f"B={config.batch_size}, T={total_steps}, sigma={settings.noise_multiplier}: "
        f"epsilon={eps_planned:.4g} at delta={settings.delta} ({settings.accountant}"
        f" accountant)" + (f"; stopping at target {config.dp.target_epsilon}"
                           if total_steps < config.num_steps else ""))

  d_template = steps.init_net(jax.random.key(0), nets.disc, nets.tx)
  bank = bank_lib.DiscriminatorBank(os.path.join(workdir, "bank"), d_template,
                                    cache_bytes=config.bank_cache_mb << 20)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  start = checkpoint.latest_step(ckpt_dir)
  writer = metrics_lib.MetricWriter(workdir, resume_step=start)
  warm_start_bank(config, nets, bank, images, labels, shards, k_bank, writer)

  g = steps.init_net(k_gen, nets.gen, nets.tx)
  ema = g.params
  if start is not None:
    (g, ema), _, start = checkpoint.restore(ckpt_dir, (g, ema))
    bank.rollback(start)
    print(f"Resuming stage 2 from step {start}.")
  start = start or 0

  progress = metrics_lib.Progress(total_steps, start, desc="stage 2 (private G)",
                                  interval=config.progress_interval_s)
  step = start
  t0 = t_log = time.time()
  logged = start

  def draw(step):  # Which discriminator step `step` uses, and its batches.
    rng = np.random.default_rng([config.seed, 2, step])
    k = int(rng.integers(config.num_discriminators))
    return k, shard_batches(shards[k], config.n_critic, config.batch_size, rng)

  upcoming = draw(start + 1) if start < total_steps else None
  for step in range(start + 1, total_steps + 1):
    bank.current_step = step
    k, idx = upcoming
    d = bank.get(k)
    if step < total_steps:
      upcoming = draw(step + 1)
      bank.prefetch(upcoming[0])  # Loads while this step computes.
    g, ema, d, m = nets.private_iteration(
        g, ema, d, jnp.asarray(_to_float(images[idx])), jnp.asarray(labels[idx]),
        jax.random.fold_in(k_loop, step))
    bank.put(k, d)
    if step % config.log_every_steps == 0 or step == total_steps:
      row = {key: float(v) for key, v in m.items()}
      row["discriminator"] = k
      now = time.time()
      # Wall time per step since the last row (sample grids and checkpoints included).
      row["sec_per_step"] = (now - t_log) / (step - logged)
      t_log, logged = now, step
      writer.write(step, row)
      progress.update(step, {"g_loss": row["g_loss"], "wdist": row["wasserstein"]})
    if step % config.sample_every_steps == 0 or step == total_steps:
      _save_grid(os.path.join(workdir, f"samples_{step:06d}.png"), nets.generate, ema,
                 g.model_state, k_sample)
    if step % config.checkpoint_every_steps == 0 or step == total_steps:
      # Ledger first: it may over-report after a crash, never under-report.
      entry = ledger.record(step)
      writer.write(step, {"epsilon": entry["epsilon"]})
      bank.flush(step)
      checkpoint.save(ckpt_dir, step, (g, ema))
  progress.close(step)
  if start == total_steps:
    ledger.record(total_steps)

  gen_x, gen_y = sample_generator(nets.generate, ema, g.model_state, k_sample,
                                  config.num_gen_samples)
  out_path = os.path.join(workdir, "gen_data.npz")
  fileio.atomic_write_npz(out_path, compressed=True, x=gen_x.astype(np.float32), y=gen_y)
  entry = ledger.record(total_steps)
  # The released model: the EMA generator only (the bank stays in the workdir).
  checkpoint.save_tree(os.path.join(workdir, "generator.npz"),
                       {"params": ema, "model_state": g.model_state},
                       meta={"generator": config.generator, "privacy": entry})
  result = {"steps": total_steps, "epsilon": entry["epsilon"],
            "accountant": settings.accountant, "delta": settings.delta,
            "noise_multiplier": settings.noise_multiplier,
            "stage2_time_s_this_run": time.time() - t0,
            "gen_data": out_path, "dataset": config.dataset}
  fileio.atomic_write_json(os.path.join(workdir, "results.json"), result)
  print(f"Done: {total_steps} private steps, epsilon={entry['epsilon']} "
        f"({settings.accountant}); samples in {out_path}")
  return result
