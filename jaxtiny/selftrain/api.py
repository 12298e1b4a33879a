"""Self-training as pure, jit- and vmap-friendly functions of any model.

A model is a function `apply_fn(params, x) -> logits [N, C]`; `x` may be any
pytree of arrays with a leading example axis (e.g. grayscale images and one
colour per image). Optimisers are optax transformations. Every function here
returns new parameters and a per-step trace and never reads globals, so
`jax.vmap` over seeds (params, keys, data) runs several seeds in one call.

* `train_supervised`: minibatch cross-entropy epochs with model selection by
  a label-free-on-target score (e.g. source validation accuracy).
* `entropy_minimisation`: conditional-entropy minimisation on target inputs,
  target-only or joint with the source cross-entropy (`source_weight`).
* `pseudo_label`: rounds of hard pseudo-labels from a teacher (the model at
  the start of each round) with confidence selection by probability, margin
  or per-class top fraction, then `steps_per_round` steps on them.
* `teacher_student`: minibatch mean-teacher / FixMatch-style training: an
  EMA teacher labels a weak view, a (fresh or continued) student learns the
  confident labels on a strong view, optionally with the source loss.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

ApplyFn = Callable[[Any, Any], jax.Array]


def num_examples(x) -> int:
  return jax.tree.leaves(x)[0].shape[0]


def take(x, idx):
  """Rows `idx` of every leaf of the pytree `x`."""
  return jax.tree.map(lambda a: a[idx], x)


def cross_entropy(logits, labels, mask=None):
  """Mean softmax cross-entropy (over `mask` when given)."""
  per = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if mask is None:
    return jnp.mean(per)
  mask = mask.astype(per.dtype)
  return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def conditional_entropy(logits):
  """Mean entropy of softmax(logits), in nats."""
  logp = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.sum(jnp.exp(logp) * logp, axis=-1))


def accuracy(apply_fn: ApplyFn, params, x, y, batch_size: int = 10_000):
  """Accuracy over all of (x, y), in fixed-size chunks (last one masked)."""
  n = num_examples(x)
  chunks = -(-n // batch_size)

  def body(correct, i):
    idx = jnp.minimum(i * batch_size + jnp.arange(batch_size), n - 1)
    valid = (i * batch_size + jnp.arange(batch_size)) < n
    pred = jnp.argmax(apply_fn(params, take(x, idx)), -1)
    return correct + jnp.sum((pred == y[idx]) & valid), None

  correct, _ = jax.lax.scan(body, 0, jnp.arange(chunks))
  return correct / n


def train_supervised(apply_fn: ApplyFn, params, tx: optax.GradientTransformation, x, y,
                     key, *, epochs: int, batch_size: int,
                     select_fn: Optional[Callable[[Any], jax.Array]] = None):
  """Minibatch cross-entropy training (reshuffled every epoch, last partial
  batch dropped).

  Returns:
    (params, trace): the parameters after the epoch with the highest
    `select_fn(params)` (the last epoch when None), and per-epoch "loss" and
    "select" arrays [epochs].
  """
  n = num_examples(x)
  steps = n // batch_size
  loss_grad = jax.value_and_grad(lambda p, xb, yb: cross_entropy(apply_fn(p, xb), yb))

  def step(carry, idx):
    p, s = carry
    loss, g = loss_grad(p, take(x, idx), y[idx])
    updates, s = tx.update(g, s, p)
    return (optax.apply_updates(p, updates), s), loss

  def epoch(carry, k):
    p, s, best, best_score = carry
    order = jax.random.permutation(k, n)[: steps * batch_size].reshape(steps, batch_size)
    (p, s), losses = jax.lax.scan(step, (p, s), order)
    score = select_fn(p) if select_fn is not None else jnp.float32(0.0)
    better = score >= best_score
    best = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, best)
    return (p, s, best, jnp.maximum(score, best_score)), (jnp.mean(losses), score)

  init = (params, tx.init(params), params, jnp.float32(-jnp.inf))
  (_, _, best, _), (loss, score) = jax.lax.scan(epoch, init, jax.random.split(key, epochs))
  return best, {"loss": loss, "select": score}


def entropy_minimisation(apply_fn: ApplyFn, params, tx: optax.GradientTransformation,
                         target_x, *, steps: int, source=None, source_weight: float = 0.0,
                         entropy_weight: float = 1.0):
  """Full-batch conditional-entropy minimisation on the target inputs.

  Loss: entropy_weight * H(p(y | target_x)) + source_weight * CE(source),
  with `source` = (x, y) when the source loss is kept in the objective.

  Returns:
    (params, trace) with per-step "entropy" [steps].
  """
  def loss_fn(p):
    h = conditional_entropy(apply_fn(p, target_x))
    loss = entropy_weight * h
    if source is not None and source_weight:
      loss = loss + source_weight * cross_entropy(apply_fn(p, source[0]), source[1])
    return loss, h

  grad = jax.grad(loss_fn, has_aux=True)

  def step(carry, _):
    p, s = carry
    g, h = grad(p)
    updates, s = tx.update(g, s, p)
    return (optax.apply_updates(p, updates), s), h

  (params, _), h = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params, {"entropy": h}


def confident(logits, kind: str, threshold: float):
  """Boolean mask of pseudo-labels to keep.

  kind: "none" (all), "prob" (max probability >= threshold), "margin" (top-1
  minus top-2 probability >= threshold) or "topk" (per predicted class, the
  most confident `threshold` fraction of the examples predicted as it).
  """
  prob = jax.nn.softmax(logits)
  if kind == "none":
    return jnp.ones(prob.shape[0], bool)
  top2 = jax.lax.top_k(prob, 2)[0]
  if kind == "prob":
    return top2[:, 0] >= threshold
  if kind == "margin":
    return top2[:, 0] - top2[:, 1] >= threshold
  if kind == "topk":
    pred = jnp.argmax(prob, -1)
    conf = top2[:, 0]
    classes = jnp.arange(prob.shape[1])
    per_class = jnp.where(pred[None, :] == classes[:, None], conf[None, :], jnp.nan)
    cut = jnp.nanquantile(per_class, 1.0 - threshold, axis=1)     # [C]
    return conf >= cut[pred]
  raise ValueError(f"threshold kind must be none, prob, margin or topk; got {kind!r}")


def pseudo_label(apply_fn: ApplyFn, params, tx: optax.GradientTransformation, target_x, *,
                 rounds: int, steps_per_round: int, threshold_kind: str = "none",
                 threshold: float = 0.0, source=None, source_weight: float = 0.0,
                 reset_optimizer: bool = False):
  """Rounds of hard pseudo-labelling with full-batch steps.

  Each round the teacher (the current parameters) labels every target input
  by argmax, `confident` selects which labels to keep, and the student takes
  `steps_per_round` steps on cross-entropy to them (plus source_weight *
  source cross-entropy when `source` = (x, y) is given). The optimiser state
  carries across rounds unless `reset_optimizer`.

  Returns:
    (params, trace) with per-round "kept" (fraction of labels kept) and
    per-round "changed" (fraction of pseudo-labels that differ from the
    previous round's) [rounds].
  """
  def loss_fn(p, labels, mask):
    loss = cross_entropy(apply_fn(p, target_x), labels, mask)
    if source is not None and source_weight:
      loss = loss + source_weight * cross_entropy(apply_fn(p, source[0]), source[1])
    return loss

  grad = jax.grad(loss_fn)

  def one_round(carry, _):
    p, s, prev = carry
    logits = apply_fn(p, target_x)
    labels = jnp.argmax(logits, -1)
    mask = confident(logits, threshold_kind, threshold)
    s = tx.init(p) if reset_optimizer else s

    def step(c, _):
      q, t = c
      updates, t = tx.update(grad(q, labels, mask), t, q)
      return (optax.apply_updates(q, updates), t), None

    (p, s), _ = jax.lax.scan(step, (p, s), None, length=steps_per_round)
    return (p, s, labels), {"kept": jnp.mean(mask), "changed": jnp.mean(labels != prev)}

  n = num_examples(target_x)
  (params, _, _), trace = jax.lax.scan(
      one_round, (params, tx.init(params), jnp.full((n,), -1)), None, length=rounds)
  return params, trace


def teacher_student(apply_fn: ApplyFn, student, teacher, tx: optax.GradientTransformation,
                    target_x, key, *, steps: int, batch_size: int, ema_decay: float = 0.99,
                    threshold_kind: str = "prob", threshold: float = 0.95,
                    weak_aug: Optional[Callable] = None, strong_aug: Optional[Callable] = None,
                    source=None, source_weight: float = 0.0):
  """Mean-teacher / FixMatch-style self-training on minibatches.

  Each step draws `batch_size` target inputs; the teacher labels a weakly
  augmented view (hard argmax, kept by `confident`), the student is trained
  with cross-entropy on a strongly augmented view of the same inputs (the
  consistency between two views), plus source_weight * source cross-entropy
  on a source minibatch when `source` = (x, y). After every step the teacher
  becomes an exponential moving average of the student:
  teacher <- ema_decay * teacher + (1 - ema_decay) * student (ema_decay = 0:
  the teacher is the current student; 1: a frozen teacher).

  Args:
    student: initial student parameters (a fresh initialisation, or the
      teacher's for a continued student).
    teacher: initial teacher parameters (e.g. the source model).
    weak_aug, strong_aug: `aug(key, x) -> x` on a minibatch pytree (identity
      when None).

  Returns:
    (student, teacher, trace) with per-step "loss" and "kept" [steps].
  """
  n = num_examples(target_x)
  ident = lambda k, x: x  # noqa: E731
  weak_aug, strong_aug = weak_aug or ident, strong_aug or ident

  def loss_fn(p, xs, labels, mask, src):
    loss = cross_entropy(apply_fn(p, xs), labels, mask)
    if src is not None:
      loss = loss + source_weight * cross_entropy(apply_fn(p, src[0]), src[1])
    return loss

  grad = jax.value_and_grad(loss_fn)

  def step(carry, k):
    s, t, opt = carry
    k_idx, k_w, k_s, k_src = jax.random.split(k, 4)
    xb = take(target_x, jax.random.randint(k_idx, (batch_size,), 0, n))
    logits_t = apply_fn(t, weak_aug(k_w, xb))
    labels = jnp.argmax(logits_t, -1)
    mask = confident(logits_t, threshold_kind, threshold)
    src = None
    if source is not None and source_weight:
      idx = jax.random.randint(k_src, (batch_size,), 0, num_examples(source[0]))
      src = (take(source[0], idx), source[1][idx])
    loss, g = grad(s, strong_aug(k_s, xb), labels, mask, src)
    updates, opt = tx.update(g, opt, s)
    s = optax.apply_updates(s, updates)
    t = jax.tree.map(lambda a, b: ema_decay * a + (1.0 - ema_decay) * b, t, s)
    return (s, t, opt), {"loss": loss, "kept": jnp.mean(mask)}

  (student, teacher, _), trace = jax.lax.scan(
      step, (student, teacher, tx.init(student)), jax.random.split(key, steps))
  return student, teacher, trace
