"""IS and FID (LeNet features) with a quickly trained MNIST classifier."""

import os

import numpy as np
import pytest

from helpers import require_prepared
from helpers import train_quick_classifier
from jaxtiny import data
from jaxtiny.eval import generated
from jaxtiny.eval import scores


@pytest.fixture(scope="module")
def quick_classifier(tmp_path_factory):
  return train_quick_classifier(str(tmp_path_factory.mktemp("clf")))


def _as_set(x, y, tmp_path, name):
  path = tmp_path / f"{name}.npz"
  np.savez(path, x=x, y=y)
  return generated.load_generated(str(path))


def test_real_data_scores_high_and_noise_scores_low(quick_classifier, tmp_path):
  images, labels = data.load("mnist", "test")
  real = _as_set(images.astype(np.float32) / 255.0, labels, tmp_path, "real")
  got = scores.sample_quality(real, "mnist", is_samples=10000, fid_samples=2000,
                              classifier_path=quick_classifier, log=lambda _: None)
  assert got["is_mean"] > 7.0 and got["label_acc"] > 0.9
  noise = _as_set(np.random.default_rng(0).random((2000, 28, 28), np.float32),
                  np.arange(2000) % 10, tmp_path, "noise")
  bad = scores.sample_quality(noise, "mnist", is_samples=2000, fid_samples=2000,
                              classifier_path=quick_classifier, log=lambda _: None)
  assert bad["is_mean"] < 2.0 and bad["label_acc"] < 0.2
  # Real test images are close to the training statistics; noise is far.
  assert got["fid_lenet"] < 0.05 * bad["fid_lenet"]
  # The reference statistics are cached next to the classifier.
  assert os.path.exists(quick_classifier.replace(".npz", ".fid_stats.npz"))


def test_fid_grows_with_added_noise(quick_classifier, tmp_path):
  images, labels = data.load("mnist", "test")
  x = images[:2000].astype(np.float32) / 255.0
  rng = np.random.default_rng(1)
  fids = []
  for scale in (0.0, 0.1, 0.3):
    noisy = np.clip(x + scale * rng.normal(size=x.shape), 0, 1).astype(np.float32)
    s = scores.sample_quality(_as_set(noisy, labels[:2000], tmp_path, f"n{scale}"), "mnist",
                              is_samples=2000, fid_samples=2000,
                              classifier_path=quick_classifier, log=lambda _: None)
    fids.append(s["fid_lenet"])
  assert fids[0] < fids[1] < fids[2], fids


def test_cnn_accuracy_on_real_subset_and_on_noise(tmp_path):
  """The CNN protocol (a LeNet on the generated set, tested on the real test
  set) scores real images far above label-noise images."""
  from jaxtiny.eval import cnn
  require_prepared("mnist")
  images, labels = data.load("mnist", "train")
  real = _as_set(images[:2000].astype(np.float32) / 255.0, labels[:2000], tmp_path, "r")
  acc = cnn.cnn_accuracy(real, "mnist", str(tmp_path / "cnn_real"), epochs=2)
  shuffled = _as_set(real.x[..., 0], np.random.default_rng(0).permutation(real.y),
                     tmp_path, "s")
  acc_shuffled = cnn.cnn_accuracy(shuffled, "mnist", str(tmp_path / "cnn_s"), epochs=2)
  assert acc > 0.85 and acc_shuffled < 0.3, (acc, acc_shuffled)
