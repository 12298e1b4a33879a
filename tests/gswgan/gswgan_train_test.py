"""GS-WGAN trainer: shards, bank versioning, budget handling, smoke run + resume."""

import json
import os

import numpy as np
import pytest

from experiments.configs import gswgan as gswgan_config
from helpers import require_prepared
from jaxtiny.gswgan import bank as bank_lib
from jaxtiny.gswgan import train
from jaxtiny.privacy import accounting
from jaxtiny.train import checkpoint


def _config(arg="smoke", **dp):
  c = gswgan_config.get_config(arg)
  with c.unlocked():
    for k, v in dp.items():
      c.dp[k] = v
  return c


def test_shards_are_disjoint_and_seeded():
  shards = train.make_shards(1000, 7, seed=3)
  assert shards.shape == (7, 142)
  assert len(np.unique(shards)) == shards.size
  np.testing.assert_array_equal(shards, train.make_shards(1000, 7, seed=3))
  assert not np.array_equal(shards, train.make_shards(1000, 7, seed=4))
  with pytest.raises(ValueError, match="num_discriminators=2000"):
    train.make_shards(1000, 2000, 0)
  with pytest.raises(ValueError, match="exceeds the shard size"):
    train.shard_batches(shards[0][:5], 2, 8, np.random.default_rng(0))


def test_bank_versions_rollback_and_eviction(tmp_path):
  template = {"w": np.zeros((100, 100), np.float32)}  # 40 kB per discriminator
  bank = bank_lib.DiscriminatorBank(str(tmp_path), template, cache_bytes=100_000)
  for k in range(3):
    bank.write_initial(k, {"w": np.full((100, 100), k, np.float32)})
  bank.current_step = 1
  bank.put(0, {"w": np.full((100, 100), 10, np.float32)})
  bank.flush(1)  # Checkpoint at step 1.
  for step, k in ((2, 1), (3, 2), (4, 0)):  # The cache holds 2: evictions write.
    bank.current_step = step
    bank.put(k, {"w": np.full((100, 100), 100 + step, np.float32)})
    bank.get((k + 1) % 3)
  assert bank.get(0)["w"][0, 0] == 104
  bank.wait()  # (A crash may also lose writes in flight; rollback drops them anyway.)
  # Crash: resume from the step-1 checkpoint.
  reopened = bank_lib.DiscriminatorBank(str(tmp_path), template, cache_bytes=100_000)
  reopened.rollback(1)
  assert [reopened.get(k)["w"][0, 0] for k in range(3)] == [10, 1, 2]
  names = sorted(os.listdir(tmp_path))
  assert all(int(n.split(".v")[1][:8]) <= 1 for n in names), names
  with pytest.raises(KeyError, match="stage 1"):
    reopened.get(7)


def test_bank_write_behind_and_prefetch_match_a_dict(tmp_path):
  # A cache of one state: nearly every get is a load or a write in flight.
  template = {"w": np.zeros((50, 50), np.float32)}
  bank = bank_lib.DiscriminatorBank(str(tmp_path), template, cache_bytes=12_000,
                                    max_pending=3)
  ref = {k: float(k) for k in range(6)}
  for k in ref:
    bank.write_initial(k, {"w": np.full((50, 50), ref[k], np.float32)})
  rng = np.random.default_rng(0)
  draws = rng.integers(6, size=301)
  for step in range(1, 301):
    bank.current_step = step
    k = int(draws[step])
    got = bank.get(k)["w"]
    assert got.min() == got.max() == ref[k], (step, k)
    bank.prefetch(int(draws[step + 1]) if step < 300 else 0)
    ref[k] = 1000.0 + step
    bank.put(k, {"w": np.full((50, 50), ref[k], np.float32)})
    if step % 50 == 0:
      bank.flush(step)
  bank.close()
  reopened = bank_lib.DiscriminatorBank(str(tmp_path), template)
  reopened.rollback(300)
  assert {k: float(reopened.get(k)["w"][0, 0]) for k in ref} == ref
  # One file per discriminator is left after the last checkpoint.
  assert len(os.listdir(tmp_path)) == 6, sorted(os.listdir(tmp_path))


def test_bank_put_supersedes_a_prefetch(tmp_path):
  bank = bank_lib.DiscriminatorBank(str(tmp_path), {"w": np.zeros(3, np.float32)},
                                    cache_bytes=12)  # One state.
  for k in range(2):
    bank.write_initial(k, {"w": np.full(3, k, np.float32)})
  bank.wait()
  bank.prefetch(1)
  bank.put(1, {"w": np.full(3, 7, np.float32)})  # Without a get in between.
  bank.get(0)  # Evicts 1 (a write in flight or done).
  bank.wait()
  assert bank.get(1)["w"][0] == 7


def test_bank_write_error_reaches_the_trainer(tmp_path, monkeypatch):
  bank = bank_lib.DiscriminatorBank(str(tmp_path), {"w": np.zeros(3, np.float32)})

  def disk_full(path, tree):
    raise OSError(28, "No space left on device", path)

  monkeypatch.setattr(bank_lib.checkpoint, "save_tree", disk_full)
  bank.put(0, {"w": np.ones(3, np.float32)})
  with pytest.raises(OSError, match="No space left"):
    bank.flush(1)


def test_warmup_mode_auto_follows_the_device_count():
  import jax
  c = _config("mnist")
  assert c.warmup_mode == "auto"  # The paper variants choose by device count.
  assert train.warmup_mode(c) == ("vmap" if jax.device_count() > 1 else "sequential")
  # Two (simulated) devices: the vmapped chunk, sharded over them.
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  out = subprocess.run(
      [sys.executable, "-c", "from experiments.configs import gswgan as g; "
       "from jaxtiny.gswgan import train; print(train.warmup_mode(g.get_config('mnist')))"],
      env=env, capture_output=True, text=True, check=True,
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert out.stdout.strip() == "vmap", out.stderr[-2000:]
  with c.unlocked():
    c.warmup_mode = "parallel"
  with pytest.raises(ValueError, match="warmup_mode='parallel': use 'auto'"):
    train.warmup_mode(c)


def test_budget_refused_or_capped_before_training():
  c = _config(target_epsilon=1e-3)
  with pytest.raises(accounting.PrivacyBudgetError, match="cannot be met"):
    train.planned_steps(c)
  with pytest.raises(accounting.PrivacyBudgetError, match="noise_multiplier=0"):
    train.planned_steps(_config(target_epsilon=10.0, noise_multiplier=0.0))
  s = train._settings(c)  # pylint: disable=protected-access
  eps = lambda t: accounting.compute_epsilon(s.accountant, s.noise_multiplier,
                                             s.num_discriminators, s.batch_size, t, s.delta)
  target = eps(3) * 1.001  # Enough for 3 of the 6 configured steps.
  assert train.planned_steps(_config(target_epsilon=target)) == 3
  assert train.planned_steps(_config(target_epsilon=0.0)) == 6


def test_refuses_impossible_budget_without_writing(tmp_path):
  with pytest.raises(accounting.PrivacyBudgetError):
    train.train_and_evaluate(_config(target_epsilon=1e-3), str(tmp_path / "w"))
  assert not (tmp_path / "w" / "config.json").exists()


def test_smoke_run_and_resume_after_crash(tmp_path, monkeypatch):
  require_prepared("mnist")
  config = _config()
  full = train.train_and_evaluate(config, str(tmp_path / "full"))
  for name in ("gen_data.npz", "privacy.json", "metrics.jsonl", "results.json",
               "samples_000003.png", "samples_000006.png", "shards.npy",
               "generator.npz"):
    assert (tmp_path / "full" / name).exists(), name
  with np.load(tmp_path / "full" / "generator.npz") as f:
    # Only the EMA generator is released: no discriminator or optimizer state.
    assert f.files and all(k.startswith(("['params']", "['model_state']", "__meta__"))
                           for k in f.files), f.files
    assert not any("Embed" in k or "opt_state" in k for k in f.files)
  with np.load(tmp_path / "full" / "gen_data.npz") as f:
    x, y = f["x"], f["y"]
  assert x.shape == (200, 28, 28, 1) and x.dtype == np.float32
  assert 0.0 <= x.min() and x.max() <= 1.0
  np.testing.assert_array_equal(np.bincount(y), [20] * 10)
  ledger = json.loads((tmp_path / "full" / "privacy.json").read_text())
  assert ledger["steps"] == 6 and ledger["accountant"] == "strict"
  assert ledger["epsilon"] == pytest.approx(accounting.compute_epsilon(
      "strict", 1.07, 4, 8, 6, 1e-5))
  assert full["epsilon"] == ledger["epsilon"]

  real_save = checkpoint.save

  def crash_after_first_checkpoint(directory, step, tree, **kw):
    real_save(directory, step, tree, **kw)
    raise KeyboardInterrupt(f"simulated kill after checkpoint {step}")

  monkeypatch.setattr(checkpoint, "save", crash_after_first_checkpoint)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert json.loads((tmp_path / "resumed" / "privacy.json").read_text())["steps"] == 3
  monkeypatch.setattr(checkpoint, "save", real_save)
  # Resuming under more noise would account all 6 steps at the new sigma: refused,
  # before anything in the workdir is rewritten.
  config_json = (tmp_path / "resumed" / "config.json").read_text()
  with pytest.raises(accounting.LedgerMismatchError,
                     match=r"step 3 .*noise_multiplier: 1.07 in the ledger, 2.0 now"):
    train.train_and_evaluate(_config(noise_multiplier=2.0), str(tmp_path / "resumed"))
  assert (tmp_path / "resumed" / "config.json").read_text() == config_json
  train.train_and_evaluate(config, str(tmp_path / "resumed"))
  with np.load(tmp_path / "resumed" / "gen_data.npz") as f:
    np.testing.assert_array_equal(f["x"], x)
  assert json.loads((tmp_path / "resumed" / "privacy.json").read_text()) == ledger
  # A finished 6-step run cannot be "resumed" as a 3-step one: its generator
  # would be released with the privacy of 3 steps.
  short = _config()
  with short.unlocked():
    short.num_steps = 3
  with pytest.raises(accounting.LedgerMismatchError, match=r"step 6 with 3 generator steps"):
    train.train_and_evaluate(short, str(tmp_path / "resumed"))
  assert (tmp_path / "resumed" / "config.json").read_text() == config_json
  assert json.loads((tmp_path / "resumed" / "privacy.json").read_text()) == ledger


@pytest.mark.slow
def test_vmap_and_sequential_warm_start_agree(tmp_path):
  """The accelerator path (vmap over a chunk) and the unrolled chunk train the
  same discriminators as the sequential path."""
  require_prepared("mnist")
  from jaxtiny import data
  from jaxtiny.gswgan.train import get_networks, warm_start_bank
  from jaxtiny.gswgan import steps
  from jaxtiny.train import metrics
  import jax
  images, labels = data.load("mnist", "train")
  banks = {}
  for mode in ("sequential", "vmap", "unrolled"):
    c = _config()
    with c.unlocked():
      c.warmup_mode = mode
      c.warmup_iterations = 1
    nets = get_networks(c)
    shards = train.make_shards(len(labels), c.num_discriminators, c.seed)
    template = steps.init_net(jax.random.key(0), nets.disc, nets.tx)
    bank = bank_lib.DiscriminatorBank(str(tmp_path / mode), template)
    warm_start_bank(c, nets, bank, images, labels, shards, jax.random.key(1),
                    metrics.MetricWriter(str(tmp_path / mode)))
    banks[mode] = [bank.get(k) for k in range(c.num_discriminators)]
  for mode in ("vmap", "unrolled"):
    for a, b in zip(banks["sequential"], banks[mode]):
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=2e-3, atol=2e-5)


def test_cli_refuses_impossible_budget_with_clear_error(tmp_path):
  from helpers import run_python
  proc = run_python(["-m", "experiments.gswgan",
                     "--config=experiments/configs/gswgan.py:smoke",
                     "--config.dp.target_epsilon=0.001", f"--workdir={tmp_path}"],
                    check=False)
  assert proc.returncode != 0
  assert "dp.target_epsilon=0.001 cannot be met" in proc.stderr


def test_calibrated_noise_meets_the_target_for_the_whole_run():
  config = _config()
  with config.unlocked():
    config.dp.target_epsilon = 50.0
    config.dp.calibrate = True
    config.num_steps = 200
  resolved = train.resolve_noise(config)
  sigma = resolved.dp.noise_multiplier
  eps = accounting.compute_epsilon(config.dp.accountant, sigma, config.num_discriminators,
                                   config.batch_size, 200, config.dp.delta)
  assert eps <= 50.0 and eps > 0.99 * 50.0  # Smallest sigma: the budget is used up.
  assert train.planned_steps(resolved) == 200  # The whole run fits the budget.
  assert config.dp.noise_multiplier != sigma  # The input config is not modified.
  with config.unlocked():
    config.dp.target_epsilon = 0.0
  with pytest.raises(accounting.PrivacyBudgetError, match="needs dp.target_epsilon > 0"):
    train.resolve_noise(config)
