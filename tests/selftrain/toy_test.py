"""Linear theory toys: data, projection, losses, diagnostics, dynamics."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import run_python
from jaxtiny.selftrain import toy

SPEC = toy.ToySpec()


def _data(domain, n=100_000, seed=0, spec=SPEC):
  c, u = toy.signal_direction(jax.random.key(seed), spec)
  x, y = toy.sample(jax.random.key(seed + 1), c, u, spec, domain, n)
  return np.asarray(x), np.asarray(y), np.asarray(c)


def test_source_spurious_correlates_and_target_is_independent():
  for domain, agree in (("source", 0.8 + 0.2 * 0.5), ("target", 0.5)):
    x, y, c = _data(domain)
    s = 2 * y - 1
    assert abs(y.mean() - 0.5) < 0.01
    for j in (2, 3):  # Sign of each spurious coordinate vs the label.
      assert abs(np.mean(np.sign(x[:, j]) == s) - agree) < 0.01, (domain, j)
    # Signal block: class means at +-c, unit covariance.
    np.testing.assert_allclose(x[y == 1, :2].mean(0), c, atol=0.02)
    np.testing.assert_allclose(np.cov(x[y == 0, :2].T), np.eye(2), atol=0.03)
  assert abs(np.linalg.norm(c) - 2.0) < 1e-5


def test_isolated_cluster_sits_at_the_origin():
  spec = dataclasses.replace(SPEC, isolated_fraction=0.2, isolated_scale=0.1)
  x, y, c = _data("target", spec=spec)
  near = np.linalg.norm(x[:, :2], axis=1) < 0.5
  # 20 % isolated, plus the few main-cluster points (at +-c, |c| = 2) that come close.
  assert 0.195 < near.mean() < 0.225
  assert abs(y[near].mean() - 0.5) < 0.02  # Both classes, no signal.


def test_projection_keeps_unit_norm():
  rng = np.random.default_rng(0)
  for _ in range(20):
    w = toy.project(jnp.asarray(rng.standard_normal(4) * rng.uniform(0.01, 100)))
    assert abs(float(jnp.linalg.norm(w)) - 1.0) < 1e-6
  x, y, _ = _data("source", 2000)
  w = toy.project(jnp.ones(4))
  for lr in (1e-3, 0.5, 10.0):
    w2 = toy.pgd_step(toy.logistic_loss, w, lr, jnp.asarray(x), jnp.asarray(y))
    assert abs(float(jnp.linalg.norm(w2)) - 1.0) < 1e-6


def test_entropy_gradient_matches_finite_differences():
  x, _, _ = _data("target", 3000)
  x = jnp.asarray(x, jnp.float64) if jax.config.jax_enable_x64 else jnp.asarray(x)
  w = toy.project(jnp.asarray([0.6, -0.3, 0.5, 0.2]))
  g = np.asarray(jax.grad(toy.entropy_loss)(w, x))
  eps = 1e-2
  for i in range(4):
    e = jnp.zeros(4).at[i].set(eps)
    fd = (float(toy.entropy_loss(w + e, x)) - float(toy.entropy_loss(w - e, x))) / (2 * eps)
    assert abs(fd - g[i]) < 2e-4 + 1e-2 * abs(g[i]), (i, fd, g[i])
  # The entropy of a confident score is below that of an unsure one.
  assert float(toy.entropy_loss(w * 10, x)) < float(toy.entropy_loss(w * 0.1, x))


def test_stein_diagnostic_predicts_the_spurious_gradient():
  """grad_w2 E[exp(-|t|)] = w2 (E[exp(-|t|)] - 2 p_t(0)) on target data."""
  x, _, _ = _data("target", 400_000)
  x = jnp.asarray(x)
  for w in ([0.8, 0.3, 0.4, 0.3], [0.2, 0.1, 0.7, -0.6]):
    w = toy.project(jnp.asarray(w))
    g2 = np.asarray(jax.grad(toy.exp_loss)(w, x))[2:]
    pred = np.asarray(w[2:]) * float(toy.boundary_diagnostic(w, x))
    np.testing.assert_allclose(g2, pred, atol=0.01)
  # Purely spurious (Gaussian t): the projected dynamics are neutral.
  w = toy.project(jnp.asarray([0.0, 0.0, 1.0, 1.0]))
  assert abs(float(toy.sphere_diagnostic(w, x))) < 0.02


def _short(spec, seeds=(0, 1)):
  return toy.run_seeds(np.asarray(seeds), spec, track_every=10, chunk=200)


def test_w2_shrinks_on_the_good_case_and_not_from_a_spurious_start():
  base = dataclasses.replace(SPEC, num_samples=2000, source_steps=3000, em_steps=400,
                             em_lr=1e-2)
  good = _short(base)
  w2 = good["w2_norm"].mean(0)
  assert w2[-1] < 0.5 * w2[0]
  assert good["target_acc"][:, -1].mean() > good["target_acc"][:, 0].mean()
  assert (good["sphere_diagnostic"][:, 0] > 0).all()
  bad = _short(dataclasses.replace(base, init="spurious"))
  assert (bad["w2_norm"][:, -1] > 0.99).all()
  assert abs(bad["target_acc"][:, -1].mean() - 0.5) < 0.05


def test_vmapped_seeds_equal_single_seed_runs():
  spec = dataclasses.replace(SPEC, num_samples=500, source_steps=200, em_steps=100)
  both = _short(spec, seeds=(3, 4))
  one = _short(spec, seeds=(4,))
  np.testing.assert_allclose(both["w2_norm"][1], one["w2_norm"][0], rtol=1e-5)
  np.testing.assert_allclose(both["w"][1], one["w"][0], rtol=1e-5)


def test_smoke_variant_end_to_end(tmp_path):
  run_python(["-m", "experiments.selftrain",
              "--config=experiments/configs/selftrain.py:smoke", f"--workdir={tmp_path}"])
  res = json.loads((tmp_path / "results.json").read_text())
  assert set(res["methods"]) == {"entropy", "entropy_exp", "pseudo_label"}
  for m in res["methods"].values():
    assert m["w2_norm_end"]["mean"] < m["w2_norm_start"]["mean"]
    assert m["measured_trend"] == "shrinks" == m["predicted_trend_sphere"]
  assert (tmp_path / "toy.png").read_bytes()[:4] == b"\x89PNG"
  out = run_python(["-m", "experiments.selftrain",
                    "--config=experiments/configs/selftrain.py:waterbirds",
                    f"--workdir={tmp_path}"], check=False)
  assert out.returncode != 0 and "implemented: toy" in out.stderr
  assert "celeba" in out.stderr
