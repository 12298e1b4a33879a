"""End-to-end tests of the reference classifier trainer on real MNIST."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.configs import classifier as classifier_config
from helpers import ROOT, require_prepared, run_python
from jaxtiny.classifier import reference
from jaxtiny.classifier import train
from jaxtiny.train import checkpoint
from jaxtiny.train import metrics


def smoke_config(**overrides):
  config = classifier_config.get_config("smoke")
  with config.unlocked():
    for k, v in overrides.items():
      config[k] = v
  return config


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  require_prepared("mnist")
  workdir = str(tmp_path_factory.mktemp("smoke"))
  result = train.train_and_evaluate(smoke_config(), workdir)
  return workdir, result


def test_smoke_run_learns_and_writes_outputs(smoke_run):
  workdir, result = smoke_run
  assert result["steps"] == 32
  assert result["test_accuracy"] > 0.2, "a few steps should beat chance (0.1)"
  for name in ("config.json", "metrics.jsonl", "results.json", "classifier.npz",
               "train_loss.png", "test_accuracy.png"):
    assert os.path.exists(os.path.join(workdir, name)), name
  records = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  losses = [r["train_loss"] for r in records if "train_loss" in r]
  assert len(losses) == 8 and losses[-1] < losses[0]
  assert [r["epoch"] for r in records if "epoch" in r] == [1, 2]


def test_reference_classifier_reloads_with_same_accuracy(smoke_run):
  workdir, result = smoke_run
  clf = reference.load("mnist", path=os.path.join(workdir, "classifier.npz"))
  from jaxtiny import data
  images, labels = data.load("mnist", "test")
  images, labels = images[:256], labels[:256]
  logits, features = clf.logits_and_features(images.astype(np.float32) / 255.0)
  assert features.shape == (256, 32)
  acc = float(np.mean(np.argmax(logits, -1) == labels))
  assert acc == pytest.approx(result["test_accuracy"], abs=1e-6)
  # uint8 and [0, 1] float inputs are the same images.
  np.testing.assert_allclose(clf.logits(images), logits, rtol=1e-5, atol=1e-5)


def test_missing_reference_names_the_training_command(tmp_path):
  with pytest.raises(FileNotFoundError, match="experiments.classifier.*:fashion_mnist"):
    reference.load("fashion_mnist", data_dir=str(tmp_path))


def test_resume_after_crash_equals_uninterrupted_run(tmp_path, monkeypatch):
  require_prepared("mnist")
  config = smoke_config()
  full = train.train_and_evaluate(config, str(tmp_path / "full"))

  real_save = checkpoint.save
  saved = []

  def crash_after_second_save(directory, step, tree, **kw):
    real_save(directory, step, tree, **kw)
    saved.append(step)
    if len(saved) == 2:
      raise KeyboardInterrupt(f"simulated kill after checkpoint {step}")

  monkeypatch.setattr(checkpoint, "save", crash_after_second_save)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert saved == [8, 16]
  monkeypatch.setattr(checkpoint, "save", real_save)
  resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))

  assert resumed["test_accuracy"] == full["test_accuracy"]
  a = np.load(tmp_path / "full" / "classifier.npz")
  b = np.load(tmp_path / "resumed" / "classifier.npz")
  for k in a.files:
    if k != "__meta__":
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert metrics.read_metrics(str(tmp_path / "full" / "metrics.jsonl")) == \
      metrics.read_metrics(str(tmp_path / "resumed" / "metrics.jsonl"))


@pytest.mark.slow
def test_sigkill_mid_run_then_same_command_resumes(tmp_path):
  """A real kill -9 of the CLI between checkpoints, then the same command."""
  require_prepared("mnist")
  args = ["-m", "experiments.classifier",
          "--config=experiments/configs/classifier.py:smoke",
          "--config.num_epochs=6", "--config.checkpoint_every_steps=4"]
  run_python(args + [f"--workdir={tmp_path / 'full'}"])
  workdir = tmp_path / "killed"
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.Popen([sys.executable] + args + [f"--workdir={workdir}"],
                          cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while time.time() < deadline and (checkpoint.latest_step(str(workdir / "checkpoints")) or 0) < 20:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (workdir / "results.json").exists(), "the run finished before the kill"
  run_python(args + [f"--workdir={workdir}"])
  full = json.loads((tmp_path / "full" / "results.json").read_text())
  resumed = json.loads((workdir / "results.json").read_text())
  assert resumed["test_accuracy"] == full["test_accuracy"]


def test_cli_config_overrides(tmp_path):
  require_prepared("mnist")
  run_python(["-m", "experiments.classifier",
              "--config=experiments/configs/classifier.py:smoke",
              "--config.num_epochs=1", "--config.model.hidden=16",
              "--config.optimizer.learning_rate=0.003", f"--workdir={tmp_path}"])
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["num_epochs"] == 1 and saved["model"]["hidden"] == 16
  assert saved["optimizer"]["learning_rate"] == 0.003
  assert json.loads((tmp_path / "results.json").read_text())["steps"] == 16
  bad = run_python(["-m", "experiments.classifier",
                    "--config=experiments/configs/classifier.py:smoke",
                    "--config.no_such_field=1", f"--workdir={tmp_path / 'bad'}"],
                   check=False)
  assert bad.returncode != 0 and "no_such_field" in bad.stderr


_TWO_DEVICE_SCRIPT = r"""
import json, sys
import jax
assert jax.device_count() == 2, jax.devices()
from experiments.configs import classifier as cc
from jaxtiny.classifier import train
from jaxtiny.train import metrics
out = {}
for n in (1, 2):
  c = cc.get_config("smoke")
  with c.unlocked():
    c.num_devices = n
    c.log_every_steps = 1
  r = train.train_and_evaluate(c, sys.argv[1] + f"/dev{n}")
  recs = metrics.read_metrics(sys.argv[1] + f"/dev{n}/metrics.jsonl")
  out[n] = {"loss": [x["train_loss"] for x in recs if "train_loss" in x],
            "acc": r["test_accuracy"], "devices": r["num_devices"]}
print("RESULT" + json.dumps(out))
"""


def test_two_devices_match_one_device(tmp_path):
  require_prepared("mnist")
  proc = run_python(["-c", _TWO_DEVICE_SCRIPT, str(tmp_path)],
                    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][0]
  out = json.loads(line[len("RESULT"):])
  one, two = out["1"], out["2"]
  assert one["devices"] == 1 and two["devices"] == 2
  assert len(one["loss"]) == 32
  np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4, atol=1e-5)
  assert abs(two["acc"] - one["acc"]) <= 1 / 256 + 1e-9
