"""Colored MNIST data, the self-training API, and a smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import require_prepared, run_python
from jaxtiny.data import colored
from jaxtiny.nn import mlp
from jaxtiny.selftrain import api
from jaxtiny.selftrain import cmnist

N = 200_000


def test_cmnist10_colour_bands():
  y = jnp.asarray(np.random.default_rng(0).integers(0, 10, N))
  for domain, p_band in (("source", 0.95 + 0.05 * 0.1), ("target", 0.1)):
    c = np.asarray(colored.colours(jax.random.key(1), y, num_classes=10, domain=domain, p=0.95))
    assert c.min() >= 0 and c.max() < 1
    in_band = np.floor(c * 10).astype(int) == np.asarray(y)
    assert abs(in_band.mean() - p_band) < 0.005, domain
    for k in range(10):  # Per class, too.
      assert abs(in_band[np.asarray(y) == k].mean() - p_band) < 0.02


def test_cmnist2_colours():
  y = jnp.asarray(np.random.default_rng(0).integers(0, 2, N))
  t = np.asarray(colored.colours(jax.random.key(2), y, num_classes=2, domain="target"))
  assert abs(t.mean() - 0.5) < 0.002 and abs(t.std() - 1 / 6) < 0.002
  assert abs(np.mean((t > 0.5) == (np.asarray(y) == 1)) - 0.5) < 0.005
  s = np.asarray(colored.colours(jax.random.key(2), y, num_classes=2, domain="source", p=0.95))
  assert abs(np.mean((s > 0.5) == (np.asarray(y) == 1)) - (0.95 + 0.05 / 2)) < 0.005
  assert np.array_equal(np.asarray(colored.binary_labels(jnp.arange(10))),
                        [1, 1, 1, 1, 1, 0, 0, 0, 0, 0])


def test_colorize_splits_intensity_between_channels():
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (5, 28, 28)), jnp.float32)
  c = jnp.linspace(0, 1, 5)
  img = np.asarray(colored.colorize(x, c))
  assert img.shape == (5, 28, 28, 2)
  np.testing.assert_allclose(img.sum(-1), np.asarray(x), rtol=1e-6)
  np.testing.assert_allclose(img[:, :, :, 0], np.asarray(x) * np.asarray(c)[:, None, None],
                             rtol=1e-6)


def test_splits_are_disjoint_and_sized():
  require_prepared("mnist")
  s = cmnist.load_splits(10)
  assert [len(s[k][1]) for k in ("source_train", "source_val", "target_train",
                                 "target_test")] == [20000, 10000, 30000, 10000]
  # Source (train[:30000]) and target (train[30000:]) are different images.
  src = np.concatenate([s["source_train"][0], s["source_val"][0]]).reshape(30000, -1)
  tgt = s["target_train"][0].reshape(30000, -1)
  src_hashes = {hash(r.tobytes()) for r in src[:3000]}
  assert not src_hashes & {hash(r.tobytes()) for r in tgt}
  assert set(np.unique(cmnist.load_splits(2)["target_test"][1])) == {0, 1}


def test_confidence_selection_rules():
  logits = jnp.log(jnp.asarray([[0.9, 0.05, 0.05], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1],
                                [0.1, 0.6, 0.3], [0.34, 0.33, 0.33]]))
  assert api.confident(logits, "none", 0).all()
  assert list(np.asarray(api.confident(logits, "prob", 0.6))) == [1, 0, 1, 1, 0]
  assert list(np.asarray(api.confident(logits, "margin", 0.3))) == [1, 0, 1, 1, 0]
  # Top half per predicted class: class 0 {0.9, 0.5, 0.34} keeps 0.9 (and the
  # median 0.5); class 1 {0.7, 0.6} keeps 0.7.
  assert list(np.asarray(api.confident(logits, "topk", 0.5))) == [1, 1, 1, 0, 0]
  with pytest.raises(ValueError, match="threshold kind"):
    api.confident(logits, "bogus", 0.5)


def _tiny_problem(seed=0, n=400):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 3, n)
  x = rng.standard_normal((n, 6)).astype(np.float32) + 2.0 * np.eye(3, 6)[y]
  model = mlp.MLP(hidden=(16,), num_classes=3)
  params = model.init(jax.random.key(seed), jnp.zeros((1, 6)))
  return model, params, jnp.asarray(x), jnp.asarray(y)


def test_entropy_minimisation_lowers_entropy_and_pseudo_label_reports_rounds():
  model, params, x, y = _tiny_problem()
  tx = optax.sgd(0.1, momentum=0.9)
  p, _ = api.train_supervised(model.apply, params, tx, x, y, jax.random.key(0), epochs=5,
                              batch_size=32)
  p_em, tr = api.entropy_minimisation(model.apply, p, tx, x, steps=50)
  assert tr["entropy"][-1] < tr["entropy"][0]
  p_pl, tr = api.pseudo_label(model.apply, p, tx, x, rounds=4, steps_per_round=5,
                              threshold_kind="prob", threshold=0.8)
  assert tr["kept"].shape == (4,) and float(tr["changed"][0]) == 1.0  # First round: all new.
  assert 0 < float(tr["kept"][-1]) <= 1


def test_train_supervised_keeps_the_selected_epoch_and_vmaps():
  model, params, x, y = _tiny_problem()
  tx = optax.sgd(0.05)

  def run(key):
    return api.train_supervised(model.apply, params, tx, x, y, key, epochs=3, batch_size=50,
                                select_fn=lambda p: api.accuracy(model.apply, p, x, y))

  best, tr = run(jax.random.key(0))
  # The returned params score the best per-epoch selection value.
  assert abs(float(api.accuracy(model.apply, best, x, y)) - float(tr["select"].max())) < 1e-6
  both, tr2 = jax.vmap(run)(jax.vmap(jax.random.key)(jnp.arange(2)))
  np.testing.assert_allclose(tr2["select"][0], tr["select"], rtol=1e-6)


def test_cmnist_smoke_end_to_end(tmp_path):
  require_prepared("mnist")
  run_python(["-m", "experiments.selftrain",
              "--config=experiments/configs/selftrain.py:cmnist10_p95,smoke",
              f"--workdir={tmp_path}"], timeout=900)
  res = json.loads((tmp_path / "results.json").read_text())
  for key in ("source_only", "self_trained", "best", "oracle"):
    assert set(res[key]) >= {"target_acc_mean", "target_acc_std", "target_acc_min",
                             "target_acc_max"}
  assert res["seeds"] == 2 and "method" in res["best"]
  # "best" is the fixed improved recipe's last iterate, not a selection.
  assert res["best"]["selected_by"].startswith("none")
  assert res["best"]["target_acc_mean"] == res["methods"]["improved"]["target_acc_mean"]
  assert res["source_val_pick"] in {"entropy", "pseudo_label_3", "pseudo_label_6",
                                    res["best"]["method"]}
  assert res["oracle"]["target_acc_mean"] > 0.5  # Colour-blind: learns digits.


def test_teacher_student_ema_and_views():
  model, params, x, y = _tiny_problem()
  other = model.init(jax.random.key(9), jnp.zeros((1, 6)))
  tx = optax.sgd(0.1)
  seen = []

  def strong(k, xb):
    seen.append(xb.shape)
    return xb + 0.1 * jax.random.normal(k, xb.shape)

  # Frozen teacher (decay 1): unchanged; the strong view was used.
  s, t, tr = api.teacher_student(model.apply, other, params, tx, x, jax.random.key(0),
                                 steps=3, batch_size=32, ema_decay=1.0, threshold=0.0,
                                 strong_aug=strong)
  jax.tree.map(np.testing.assert_array_equal, t, params)
  assert seen and seen[0] == (32, 6) and tr["kept"].shape == (3,)
  # One step with decay d: teacher = d * teacher0 + (1 - d) * student1.
  s1, t1, _ = api.teacher_student(model.apply, other, params, tx, x, jax.random.key(0),
                                  steps=1, batch_size=32, ema_decay=0.75, threshold=0.0)
  jax.tree.map(lambda a, b, c: np.testing.assert_allclose(a, 0.75 * b + 0.25 * c, rtol=1e-5, atol=1e-7),
               t1, params, s1)
  # Decay 0: the teacher is the student.
  s0, t0, _ = api.teacher_student(model.apply, other, params, tx, x, jax.random.key(1),
                                  steps=4, batch_size=16, ema_decay=0.0, threshold=0.5,
                                  source=(x, y), source_weight=1.0)
  jax.tree.map(np.testing.assert_allclose, s0, t0)
