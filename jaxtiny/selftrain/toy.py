"""Linear theory toys of "Self-training Avoids Using Spurious Features Under
Domain Shift" (Chen, Wei, Kumar, Ma, NeurIPS 2020).

Inputs x = (x1, x2) in R^(d1 + d2): x1 = (2y - 1) c + N(0, I) carries the
signal (c a fixed random direction of norm `signal_norm`); x2 is spurious. In
the labelled source domain each coordinate of x2 ~ N(0, I) is, with
probability `spurious_prob`, replaced by |x2_j| (2y - 1), so x2 predicts y; in
the unlabelled target domain x2 ~ N(0, I) is independent of y. A linear score
t = w^T x is trained by projected gradient descent on the unit sphere
(renormalised after every step): logistic loss on the source, then
self-training on fresh target samples every step (entropy minimisation) or
every round (pseudo-labelling). The Bayes-optimal target direction is
(c, 0) / |c|, so the weight on the spurious block, ||w2||, measures how much
of the classifier rests on x2.

Optional isolated cluster (the paper's failure case (b)): a fraction
`isolated_fraction` of each class sits in a tight cluster at x1 = 0 (spread
`isolated_scale`), cut off from the two main clusters at +-c. No direction of
w1 moves it off the decision boundary, so it stays half misclassified, and
its mass at t = 0 keeps the boundary density high (see the diagnostic).

Diagnostic (Stein's lemma): for Gaussian x2 independent of the rest, the
gradient of E[exp(-|t|)] with respect to w2 is w2 (E[exp(-|t|)] - 2 p_t(0)),
p_t the density of t. Gradient descent therefore shrinks w2 when
E[exp(-|t|)] > 2 p_t(0) (few target points near the boundary) and grows it
otherwise; `boundary_diagnostic` estimates that quantity from samples.

Everything below is a pure function of explicit keys; `run_seeds` vmaps the
whole pipeline (data, source training, self-training, tracking) over seeds.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class ToySpec:
  """Static description of one toy experiment (hashable: a jit static arg)."""
  d1: int = 2
  d2: int = 2
  signal_norm: float = 2.0
  spurious_prob: float = 0.8
  num_samples: int = 10_000
  isolated_fraction: float = 0.0
  isolated_scale: float = 0.1
  # Source training.
  source_steps: int = 20_000
  source_lr: float = 1e-3
  # Initial weights: "random" (uniform on the sphere, then source training)
  # or "spurious" (failure case (a), the bad source classifier: weight
  # `bad_source_w1` along c, the rest along the spurious all-ones direction of
  # x2; no source training). With w1 = 0 (the default, purely spurious), w is
  # a stationary point of the target objectives: x1 is independent of
  # t = w2^T x2, so the w1 gradient vanishes in expectation.
  init: str = "random"
  bad_source_w1: float = 0.0
  # Self-training.
  method: str = "entropy"       # "entropy" or "pseudo_label".
  em_loss: str = "entropy"      # "entropy" (binary entropy) or "exp" (exp(-|t|)).
  em_steps: int = 10_000
  em_lr: float = 1e-3
  pl_rounds: int = 200
  pl_steps: int = 50
  pl_threshold: float = 0.1
  pl_lr: float = 1e-3


def signal_direction(key, spec: ToySpec):
  """c (norm `signal_norm`) and a unit u orthogonal to c, both in R^d1."""
  k1, k2 = jax.random.split(key)
  c = jax.random.normal(k1, (spec.d1,))
  c = c / jnp.linalg.norm(c)
  v = jax.random.normal(k2, (spec.d1,))
  u = v - (v @ c) * c
  return spec.signal_norm * c, u / jnp.linalg.norm(u)


def sample(key, c, u, spec: ToySpec, domain: str, n: Optional[int] = None):
  """(x [n, d1 + d2], y [n] in {0, 1}) from the source or target domain."""
  n = n or spec.num_samples
  ky, k1, k2, k3, k4 = jax.random.split(key, 5)
  y = jax.random.bernoulli(ky, 0.5, (n,)).astype(jnp.float32)
  s = 2.0 * y - 1.0
  x1 = s[:, None] * c + jax.random.normal(k1, (n, spec.d1))
  if spec.isolated_fraction > 0:
    iso = jax.random.bernoulli(k4, spec.isolated_fraction, (n,))
    x1 = jnp.where(iso[:, None], spec.isolated_scale * (x1 - s[:, None] * c), x1)
  x2 = jax.random.normal(k2, (n, spec.d2))
  if domain == "source":
    flip = jax.random.bernoulli(k3, spec.spurious_prob, (n, spec.d2))
    x2 = jnp.where(flip, jnp.abs(x2) * s[:, None], x2)
  elif domain != "target":
    raise ValueError(f"domain must be 'source' or 'target', got {domain!r}")
  return jnp.concatenate([x1, x2], axis=1), y


def project(w):
  """Back onto the unit sphere."""
  return w / jnp.linalg.norm(w)


def logistic_loss(w, x, y, mask=None):
  """Mean log(1 + exp(-(2y - 1) w^T x)) (over `mask` when given)."""
  per = jax.nn.softplus(-(2.0 * y - 1.0) * (x @ w))
  if mask is None:
    return jnp.mean(per)
  return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def entropy_loss(w, x):
  """Mean binary entropy of sigmoid(w^T x), in nats."""
  t = x @ w
  p_log_p = jax.nn.sigmoid(t) * jax.nn.log_sigmoid(t)
  q_log_q = jax.nn.sigmoid(-t) * jax.nn.log_sigmoid(-t)
  return -jnp.mean(p_log_p + q_log_q)


def exp_loss(w, x):
  """Mean exp(-|w^T x|): the analysis's surrogate for the entropy."""
  return jnp.mean(jnp.exp(-jnp.abs(x @ w)))


def pgd_step(loss_fn: Callable, w, lr, *args):
  """One projected gradient-descent step on the unit sphere."""
  return project(w - lr * jax.grad(loss_fn)(w, *args))


def accuracy(w, x, y):
  return jnp.mean(((x @ w) > 0) == (y > 0.5))


def boundary_diagnostic(w, x, bandwidth=None):
  """E[exp(-|t|)] - 2 p_t(0) for t = w^T x on target samples x.

  p_t(0) is the fraction of |t| < h over 2h (h = `bandwidth`, default 0.05:
  narrow, because a smoothing kernel as wide as the spread of t fills in the
  gap between the two class modes and overstates the density at the
  boundary). Positive: gradient descent on E[exp(-|t|)] shrinks the spurious
  weight w2; negative: it grows it (Stein's lemma; see the module docstring).
  This is the Euclidean gradient; `sphere_diagnostic` is the version for the
  projected dynamics used here."""
  t = x @ w
  h = 0.05 if bandwidth is None else bandwidth
  density0 = jnp.mean(jnp.abs(t) < h) / (2.0 * h)
  return jnp.mean(jnp.exp(-jnp.abs(t))) - 2.0 * density0


def sphere_diagnostic(w, x, bandwidth=None):
  """E[(1 + |t|) exp(-|t|)] - 2 p_t(0): the direction of ||w2|| under
  *projected* gradient descent on exp(-|t|) (positive: shrinks).

  On the unit sphere the radial part of the gradient is removed: with
  G = grad E[exp(-|t|)], d||w2||^2 / 2 = -lr (G2.w2 - ||w2||^2 G.w) and
  G.w = -E[|t| exp(-|t|)], so the sign is that of `boundary_diagnostic`
  plus E[|t| exp(-|t|)]. For Gaussian t both sides are equal (Stein), so a
  purely spurious classifier (t = w2^T x2) is a neutral point."""
  t = x @ w
  return boundary_diagnostic(w, x, bandwidth) + jnp.mean(jnp.abs(t) * jnp.exp(-jnp.abs(t)))


def initial_weights(key, c, spec: ToySpec):
  d = spec.d1 + spec.d2
  if spec.init == "random":
    return project(jax.random.normal(key, (d,)))
  if spec.init == "spurious":
    a = spec.bad_source_w1
    w2 = jnp.ones(spec.d2) / np.sqrt(spec.d2)
    return jnp.concatenate([a * c / jnp.linalg.norm(c), np.sqrt(1.0 - a * a) * w2])
  raise ValueError(f"init must be 'random' or 'spurious', got {spec.init!r}")


def _track(w, spec: ToySpec, x_eval, y_eval):
  return {"w2_norm": jnp.linalg.norm(w[spec.d1:]),
          "target_acc": accuracy(w, x_eval, y_eval),
          "diagnostic": boundary_diagnostic(w, x_eval),
          "sphere_diagnostic": sphere_diagnostic(w, x_eval)}


@functools.partial(jax.jit, static_argnames=("spec",))
def train_source(key, spec: ToySpec):
  """Source-only training of one seed.

  Returns (w, c, u, trace) where trace holds ||w2|| and source accuracy per
  step [source_steps]."""
  k_dir, k_init, k_data = jax.random.split(key, 3)
  c, u = signal_direction(k_dir, spec)
  w0 = initial_weights(k_init, c, spec)
  if spec.init == "spurious":
    return w0, c, u, {"w2_norm": jnp.full((0,), 1.0)}
  x, y = sample(k_data, c, u, spec, "source")

  def body(w, _):
    w = pgd_step(logistic_loss, w, spec.source_lr, x, y)
    return w, jnp.linalg.norm(w[spec.d1:])

  w, w2 = jax.lax.scan(body, w0, None, length=spec.source_steps)
  return w, c, u, {"w2_norm": w2}


@functools.partial(jax.jit, static_argnames=("spec", "num", "track_every"))
def self_train_chunk(key, w, c, u, start, spec: ToySpec, num: int, track_every: int):
  """`num` self-training steps (entropy) or rounds (pseudo-labelling) from
  step `start`, on fresh target samples drawn from fold_in(key, step).

  Returns (w, trace): trace has w2_norm, target_acc and diagnostic every
  `track_every` steps/rounds, evaluated on a fixed target evaluation set."""
  k_eval, k_steps = jax.random.split(key)
  x_eval, y_eval = sample(k_eval, c, u, spec, "target")
  em_loss = entropy_loss if spec.em_loss == "entropy" else exp_loss

  def one(w, step):
    x, _ = sample(jax.random.fold_in(k_steps, step), c, u, spec, "target")
    if spec.method == "entropy":
      return pgd_step(em_loss, w, spec.em_lr, x)
    t = x @ w
    pseudo = (t > 0).astype(jnp.float32)
    mask = (jnp.abs(t) > spec.pl_threshold).astype(jnp.float32)
    return jax.lax.fori_loop(
        0, spec.pl_steps,
        lambda _, v: pgd_step(logistic_loss, v, spec.pl_lr, x, pseudo, mask), w)

  def body(w, i):
    w = jax.lax.fori_loop(0, track_every, lambda j, v: one(v, start + i * track_every + j), w)
    return w, _track(w, spec, x_eval, y_eval)

  return jax.lax.scan(body, w, jnp.arange(num // track_every))


def bayes_accuracy(key, spec: ToySpec, n: int = 200_000) -> jax.Array:
  """Target accuracy of the Bayes-optimal direction (c, 0) on n samples."""
  k_dir, _, _ = jax.random.split(key, 3)
  c, u = signal_direction(k_dir, spec)
  x, y = sample(jax.random.fold_in(key, 1), c, u, spec, "target", n)
  return accuracy(project(jnp.concatenate([c, jnp.zeros(spec.d2)])), x, y)


def total_self_train_steps(spec: ToySpec) -> int:
  return spec.em_steps if spec.method == "entropy" else spec.pl_rounds


def run_seeds(seeds: np.ndarray, spec: ToySpec, track_every: int = 10,
              chunk: int = 1000, progress: Optional[Callable[[int], None]] = None) -> dict:
  """The whole toy pipeline for every seed at once (vmapped over seeds).

  Args:
    seeds: integer seeds [S].
    spec: the experiment.
    track_every: steps (rounds) between recorded points.
    chunk: steps per compiled call (progress is reported between chunks).
    progress: called with the number of finished self-training steps.

  Returns:
    numpy arrays: "source_w" [S, d], "w" [S, d] (after self-training),
    "source_w2_norm" [S, source_steps], "step" [P], "w2_norm", "target_acc",
    "diagnostic", "sphere_diagnostic" [S, P] (P = total / track_every points, step 0 included:
    the source classifier), "bayes_acc" [S].
  """
  total = total_self_train_steps(spec)
  if total % track_every or chunk % track_every:
    raise ValueError(f"track_every ({track_every}) must divide the self-training length "
                     f"({total}) and the chunk ({chunk})")
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  k_src, k_st = jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)
  w_src, c, u, src_trace = jax.vmap(train_source, in_axes=(0, None))(k_src, spec)
  x_eval = jax.vmap(lambda k, c, u: sample(jax.random.split(k)[0], c, u, spec, "target"))(
      k_st, c, u)
  first = jax.vmap(lambda w, xy: _track(w, spec, *xy))(w_src, x_eval)
  traces = [jax.tree.map(lambda a: np.asarray(a)[:, None], first)]
  w, done = w_src, 0
  while done < total:
    num = min(chunk, total - done)
    w, tr = jax.vmap(self_train_chunk, in_axes=(0, 0, 0, 0, None, None, None, None))(
        k_st, w, c, u, done, spec, num, track_every)
    traces.append(jax.tree.map(np.asarray, tr))
    done += num
    if progress is not None:
      progress(done)
  out = {k: np.concatenate([t[k] for t in traces], axis=1) for k in traces[0]}
  out["step"] = np.arange(out["w2_norm"].shape[1]) * track_every
  out["source_w"], out["w"] = np.asarray(w_src), np.asarray(w)
  out["source_w2_norm"] = np.asarray(src_trace["w2_norm"])
  out["bayes_acc"] = np.asarray(jax.vmap(lambda k: bayes_accuracy(k, spec))(k_src))
  return out


def halving_steps(step: np.ndarray, w2_norm: np.ndarray) -> float:
  """Steps per halving of ||w2|| from a least-squares fit of log2 ||w2||
  against step (inf when it does not shrink)."""
  slope = np.polyfit(step, np.log2(np.maximum(w2_norm, 1e-12)), 1)[0]
  return float(-1.0 / slope) if slope < 0 else float("inf")
