"""Helpers shared by tests that need the real prepared datasets."""

import os
import subprocess
import sys

import pytest

from jaxtiny.data import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require_prepared(name: str) -> None:
  """Skips outside CI when `name` is not prepared; fails in CI (make test prepares it)."""
  if datasets.is_prepared(name):
    return
  if os.environ.get("CI"):
    pytest.fail(f"{name} must be prepared in CI (make test runs `make data`).")
  pytest.skip(f"{name} not prepared; run `make data`.")


def run_python(args, env=None, timeout=600, check=True):
  """Runs `python args...` from the repo root; returns the CompletedProcess."""
  full_env = dict(os.environ)
  full_env.update(env or {})
  full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
  proc = subprocess.run([sys.executable] + list(args), cwd=ROOT, env=full_env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"command failed ({proc.returncode}): {args}\n"
                         f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
  return proc


def shared_mcunet_dir() -> str:
  """`../shared/data/mcunet` (the published MCUNet configs); fails in CI if absent."""
  candidates = [os.environ.get("JAXTINY_SHARED", ""),
                os.path.join(os.path.dirname(ROOT), "shared"), "/work/shared"]
  for base in candidates:
    path = os.path.join(base, "data", "mcunet") if base else ""
    if path and os.path.isfile(os.path.join(path, "mcunet-5fps_imagenet.json")):
      return path
  message = ("the published MCUNet configs (../shared/data/mcunet) are missing; "
             "set JAXTINY_SHARED to the folder that holds data/mcunet.")
  if os.environ.get("CI"):
    pytest.fail(message)
  pytest.skip(message)


def train_quick_classifier(workdir: str) -> str:
  """A small MNIST LeNet (12,000 images, 3 epochs, ~95 % test accuracy) for
  tests that score generated samples; returns its classifier.npz path."""
  from experiments.configs import classifier as classifier_config  # pylint: disable=g-import-not-at-top
  from jaxtiny.classifier import train  # pylint: disable=g-import-not-at-top
  require_prepared("mnist")
  config = classifier_config.get_config("smoke")
  with config.unlocked():
    config.num_train_examples = 12000
    config.num_epochs = 3
    config.num_test_examples = 1000
    config.model.conv_features = (8, 16)
    config.model.hidden = 64
    config.batch_size = 64
  result = train.train_and_evaluate(config, workdir)
  assert result["test_accuracy"] > 0.9
  return os.path.join(workdir, "classifier.npz")
