"""Trainer for the reference LeNet classifier (data-parallel, resumable).

`train_and_evaluate(config, workdir)` trains on a prepared dataset and saves
the reference classifier; `fit(config, workdir, train, test)` is the same
loop on any in-memory arrays (images uint8 in [0, 255] or float in [0, 1]),
used e.g. to train on generated data. Both evaluate on the test set after
every epoch, checkpoints every
`config.checkpoint_every_steps`, and resumes from the latest checkpoint when
restarted with the same workdir. The batch is sharded over
`config.num_devices` local devices (0: all) along a "data" mesh axis; in a
multi-host job every process feeds its slice of the global batch.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxtiny import data
from jaxtiny import fileio
from jaxtiny.classifier import reference
from jaxtiny.nn import LeNet
from jaxtiny.nn import cross_entropy
from jaxtiny.train import checkpoint
from jaxtiny.train import distributed
from jaxtiny.train import metrics as metrics_lib
from jaxtiny.train import plots
from jaxtiny.train import state as state_lib


def make_model(config: ml_collections.ConfigDict, num_classes: int) -> LeNet:
  return LeNet(num_classes=num_classes,
               conv_features=tuple(config.model.conv_features),
               hidden=config.model.hidden, dropout=config.model.dropout)


def make_optimizer(config: ml_collections.ConfigDict,
                   total_steps: int) -> optax.GradientTransformation:
  """Adam or SGD+momentum with a cosine or step schedule, from the config."""
  opt = config.optimizer
  if opt.schedule == "cosine":
    lr = optax.cosine_decay_schedule(opt.learning_rate, total_steps)
  elif opt.schedule == "step":
    lr = optax.piecewise_constant_schedule(
        opt.learning_rate,
        {int(b * total_steps): opt.decay_factor for b in opt.decay_at})
  elif opt.schedule == "constant":
    lr = opt.learning_rate
  else:
    raise ValueError(f"config.optimizer.schedule={opt.schedule!r}: use "
                     "'cosine', 'step' or 'constant'.")
  if opt.name == "adam":
    tx = optax.adamw(lr, weight_decay=opt.weight_decay) if opt.weight_decay \
        else optax.adam(lr)
  elif opt.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(opt.weight_decay),
                     optax.sgd(lr, momentum=opt.momentum))
  else:
    raise ValueError(f"config.optimizer.name={opt.name!r}: use 'adam' or 'sgd'.")
  return tx


def _unit(images: jax.Array) -> jax.Array:
  """Pixels as float32 in [0, 1] from uint8 [0, 255] or float [0, 1]."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def train_step(state: state_lib.TrainState, loop_key: jax.Array,
               batch: dict[str, jax.Array], *, model: LeNet,
               tx: optax.GradientTransformation, mean: float, std: float
               ) -> tuple[state_lib.TrainState, dict[str, jax.Array]]:
  """One optimizer step on a (possibly sharded) global batch.

  The dropout key is `fold_in(loop_key, step)`, so it depends only on the step.
  """
  key = jax.random.fold_in(loop_key, state.step)
  x = (_unit(batch["image"]) - mean) / std

  def loss_fn(params):
    logits = model.apply(params, x, train=True, rngs={"dropout": key})
    loss = cross_entropy(logits, batch["label"]).mean()
    return loss, logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(tx, grads)
  acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return new_state, {"loss": loss, "accuracy": acc}


def eval_step(params: Any, batch: dict[str, jax.Array], *, model: LeNet,
              mean: float, std: float) -> dict[str, jax.Array]:
  """Sums of loss and correct predictions over the real (mask=1) examples."""
  x = (_unit(batch["image"]) - mean) / std
  logits = model.apply(params, x)
  mask = batch["mask"]
  correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
  return {"loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
          "correct": jnp.sum(correct * mask), "count": jnp.sum(mask)}


def evaluate(eval_fn, params, images: np.ndarray, labels: np.ndarray,
             batch_size: int, sharding) -> dict[str, float]:
  totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
  for batch in data.eval_batches({"image": images, "label": labels}, batch_size):
    batch = jax.device_put(batch, sharding)
    out = jax.device_get(eval_fn(params, batch))
    for k in totals:
      totals[k] += float(out[k])
  return {"loss": totals["loss_sum"] / totals["count"],
          "accuracy": totals["correct"] / totals["count"]}


def _subsample(images, labels, n):
  if n and n < len(labels):
    return images[:n], labels[:n]
  return images, labels


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, float]:
  """Trains the classifier described by `config`, writing into `workdir`.

  Returns:
    Final metrics: test accuracy and loss, steps, wall time.
  """
  distributed.maybe_initialize_distributed()
  spec = data.datasets.get_spec(config.dataset)
  train = _subsample(*data.load(config.dataset, "train", config.data_dir),
                     config.num_train_examples)
  test = _subsample(*data.load(config.dataset, "test", config.data_dir),
                    config.num_test_examples)
  result, params, meta = fit(config, workdir, train, test, spec.num_classes,
                             spec.image_shape)
  if config.save_reference and jax.process_index() == 0:
    path = reference.save(reference.default_path(config.dataset, config.data_dir),
                          params, meta)
    print(f"Reference classifier saved to {path}")
  return result


def fit(config: ml_collections.ConfigDict, workdir: str,
        train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
        num_classes: int, image_shape: tuple[int, ...] = (28, 28, 1),
        desc: str = "") -> tuple[dict[str, Any], Any, dict]:
  """The training loop of `train_and_evaluate` on in-memory (images, labels).

  Writes config.json, metrics, checkpoints (resumable), classifier.npz,
  results.json and curves into `workdir`; returns (result, params, meta).
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  fileio.atomic_write_bytes(os.path.join(workdir, "config.json"),
                            config.to_json_best_effort(indent=2).encode())
  (train_x, train_y), (test_x, test_y) = train, test
  scale = 255.0 if train_x.dtype == np.uint8 else 1.0
  mean = float(train_x.mean(dtype=np.float64) / scale)
  std = float(train_x.std(dtype=np.float64) / scale)

  mesh = distributed.data_mesh(config.num_devices)
  n_dev = mesh.devices.size
  for name in ("batch_size", "eval_batch_size"):
    if config[name] % n_dev:
      raise ValueError(f"config.{name}={config[name]} must be divisible by the "
                       f"{n_dev} devices in use.")
  repl, sharded = distributed.replicated(mesh), distributed.batch_sharded(mesh)

  per_epoch = data.steps_per_epoch(len(train_y), config.batch_size)
  total_steps = config.num_epochs * per_epoch
  model = make_model(config, num_classes)
  tx = make_optimizer(config, total_steps)

  streams = state_lib.split_streams(jax.random.key(config.seed),
                                    ("init", "loop"))
  params = model.init(streams["init"], jnp.zeros((1,) + tuple(image_shape)))
  state = jax.device_put(state_lib.create_train_state(params, tx), repl)
  loop_key = jax.device_put(streams["loop"], repl)

  ckpt_dir = os.path.join(workdir, "checkpoints")
  start_step = 0
  if checkpoint.latest_step(ckpt_dir) is not None:
    state, _, start_step = checkpoint.restore(ckpt_dir, state)
    print(f"Resuming from checkpoint at step {start_step} in {ckpt_dir}.")
  writer = metrics_lib.MetricWriter(workdir, resume_step=start_step if start_step else None)

  step_fn = jax.jit(
      functools.partial(train_step, model=model, tx=tx, mean=mean, std=std),
      in_shardings=(repl, repl, sharded), out_shardings=(repl, repl),
      donate_argnums=(0,))
  eval_fn = jax.jit(functools.partial(eval_step, model=model, mean=mean, std=std),
                    in_shardings=(repl, sharded), out_shardings=repl)

  progress = metrics_lib.Progress(total_steps, start_step,
                                  desc=desc or f"classifier[{config.dataset}]",
                                  interval=config.progress_interval_s)
  batches = data.sharded_batches({"image": train_x, "label": train_y},
                                 config.batch_size, config.seed, sharded,
                                 start_step, total_steps)
  t0 = time.time()
  acc_sum = None
  n_sum = 0
  step = start_step
  for batch in batches:
    state, m = step_fn(state, loop_key, batch)
    step += 1
    acc_sum = m if acc_sum is None else jax.tree.map(jnp.add, acc_sum, m)
    n_sum += 1
    if step % config.log_every_steps == 0 or step == total_steps:
      avg = {f"train_{k}": float(v) / n_sum for k, v in jax.device_get(acc_sum).items()}
      writer.write(step, avg)
      progress.update(step, avg)
      acc_sum, n_sum = None, 0
    if step % per_epoch == 0 or step == total_steps:
      ev = evaluate(eval_fn, state.params, test_x, test_y,
                    config.eval_batch_size, sharded)
      writer.write(step, {"epoch": step // per_epoch, "test_loss": ev["loss"],
                          "test_accuracy": ev["accuracy"]})
      progress.update(step, {"test_acc": ev["accuracy"]}, force=True)
    if step % config.checkpoint_every_steps == 0 or step == total_steps:
      checkpoint.save(ckpt_dir, step, state, keep=config.keep_checkpoints)
  progress.close(step)
  train_time = time.time() - t0

  final = evaluate(eval_fn, state.params, test_x, test_y,
                   config.eval_batch_size, sharded)
  result = {"test_accuracy": final["accuracy"], "test_loss": final["loss"],
            "steps": int(step), "train_time_s_this_run": train_time,
            "num_devices": int(n_dev), "dataset": config.dataset}
  params = jax.device_get(state.params)
  meta = reference.make_meta(config, num_classes, mean, std, result)
  reference.save(os.path.join(workdir, "classifier.npz"), params, meta)
  fileio.atomic_write_json(os.path.join(workdir, "results.json"), result)
  _plot_curves(workdir)
  print(f"{desc or config.dataset}: test accuracy {final['accuracy'] * 100:.2f}% "
        f"after {step} steps ({n_dev} device(s)).")
  return result, params, meta


def _plot_curves(workdir: str) -> None:
  if jax.process_index() != 0:
    return
  records = metrics_lib.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
  test = [(r["step"], r["test_accuracy"]) for r in records if "test_accuracy" in r]
  if train:
    plots.save_line_plot(os.path.join(workdir, "train_loss.png"),
                         {"train loss": tuple(zip(*train))}, ylabel="loss", logy=True)
  if test:
    plots.save_line_plot(os.path.join(workdir, "test_accuracy.png"),
                         {"test accuracy": tuple(zip(*test))}, ylabel="accuracy")
