"""CelebA from a prepared TFDS celeb_a (ArrayRecord and TFRecord), checked
against the same images read from the official files."""

import json
import os
import shutil
import struct

import numpy as np
import pytest

from jaxtiny.data import celeba
from tests.helpers import run_python

tfds = pytest.importorskip("tensorflow_datasets")

NUM_IMAGES = 80


def _crc32c_table():
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_TABLE = _crc32c_table()


def _masked_crc(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for b in data:
    crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _write_tfrecord(path: str, records) -> None:
  with open(path, "wb") as f:
    for rec in records:
      head = struct.pack("<Q", len(rec))
      f.write(head + struct.pack("<I", _masked_crc(head)) + rec
              + struct.pack("<I", _masked_crc(rec)))


def _prepare(files_root: str, tfds_dir: str, file_format: str) -> str:
  """Prepares a celeb_a-shaped TFDS dataset from the fixture's files with a
  real TFDS builder (same features, keys and splits as TFDS's celeb_a) and
  puts it where `celeb_a` would be. TFRecord needs TensorFlow to write, so
  that variant re-frames the ArrayRecord shards' records as TFRecord."""
  ann = celeba.read_annotations(files_root)

  class JaxtinyCelebAFixture(tfds.core.GeneratorBasedBuilder,
                             skip_registration=True):
    VERSION = tfds.core.Version("2.1.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(218, 178, 3), encoding_format="jpeg"),
          "landmarks": {"lefteye_x": np.int64, "lefteye_y": np.int64},
          "attributes": {n: np.bool_ for n in ann.attr_names}}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(part)
              for split, part in celeba.TFDS_SPLITS}

    def _generate_examples(self, part):
      for i, fn in enumerate(ann.filenames):
        if ann.partition[i] == part:
          yield fn, {
              "image": os.path.join(files_root, celeba.IMAGE_DIR, fn),
              "landmarks": {"lefteye_x": 69, "lefteye_y": 109},
              "attributes": {n: bool(ann.attrs[i, k])
                             for k, n in enumerate(ann.attr_names)}}

  work = os.path.join(tfds_dir, "_build")
  JaxtinyCelebAFixture(data_dir=work, file_format="array_record"
                       ).download_and_prepare()
  built = os.path.join(work, "jaxtiny_celeb_a_fixture", "2.1.0")
  version_dir = os.path.join(tfds_dir, celeba.TFDS_NAME, "2.1.0")
  os.makedirs(os.path.dirname(version_dir))
  if file_format == "array_record":
    shutil.move(built, version_dir)
  else:
    from array_record.python import array_record_module
    os.makedirs(version_dir)
    for name in os.listdir(built):
      src = os.path.join(built, name)
      if ".array_record-" in name:
        records = array_record_module.ArrayRecordReader(src).read_all()
        _write_tfrecord(os.path.join(version_dir, name.replace(
            ".array_record-", ".tfrecord-")), records)
      elif name == "dataset_info.json":
        with open(src) as f:
          info = json.load(f)
        info["fileFormat"] = "tfrecord"
        with open(os.path.join(version_dir, name), "w") as f:
          json.dump(info, f)
      else:
        shutil.copy(src, version_dir)
  shutil.rmtree(work)
  return version_dir


@pytest.fixture(scope="module")
def files_root(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("celeba_files"))
  celeba.write_fixture(path, num_images=NUM_IMAGES, seed=3)
  return path


@pytest.fixture(scope="module", params=["array_record", "tfrecord"])
def prepared(request, files_root, tmp_path_factory):
  tfds_dir = str(tmp_path_factory.mktemp(f"tfds_{request.param}"))
  version_dir = _prepare(files_root, tfds_dir, request.param)
  return request.param, tfds_dir, version_dir


def test_tfds_rows_and_pixels_match_the_official_files(files_root, prepared,
                                                       tmp_path):
  fmt, tfds_dir, version_dir = prepared
  assert any(f".{fmt}-" in n for n in os.listdir(version_dir))
  files = celeba.open_source(files_root)
  assert files.origin.startswith("official files")
  # No official files at the CelebA root: the prepared TFDS folder is used.
  src = celeba.open_source(str(tmp_path / "empty"), tfds_dir,
                           cache_dir=str(tmp_path))
  assert src.origin.startswith("TFDS") and version_dir in src.origin
  a, b = files.annotations, src.annotations
  # The hash order of the stored records is inverted: official file order.
  assert b.filenames == a.filenames
  np.testing.assert_array_equal(b.partition, a.partition)
  assert sorted(b.attr_names) == sorted(a.attr_names)
  for name in a.attr_names:
    np.testing.assert_array_equal(b.attr(name), a.attr(name))
  idx = np.array([0, 7, 47, 50, 63, 79, 12])   # all three partitions
  np.testing.assert_array_equal(src.images(idx, 32), files.images(idx, 32))
  # Annotations and images are cached; a second source reads the caches.
  cached = sorted(os.listdir(tmp_path))
  assert any(n.startswith("jaxtiny_annotations_") for n in cached)
  assert any(n.startswith("jaxtiny_32px_") for n in cached)
  again = celeba.open_source(str(tmp_path / "empty"), tfds_dir,
                             cache_dir=str(tmp_path))
  np.testing.assert_array_equal(again.annotations.attrs, b.attrs)
  np.testing.assert_array_equal(again.images(idx, 32), files.images(idx, 32))


def test_official_files_come_before_tfds(files_root, prepared):
  _, tfds_dir, _ = prepared
  assert celeba.open_source(files_root, tfds_dir).origin.startswith(
      "official files")


def test_damaged_tfds_files_are_named(files_root, prepared, tmp_path):
  fmt, _, version_dir = prepared
  copy = tmp_path / "tfds" / celeba.TFDS_NAME / "2.1.0"
  shutil.copytree(version_dir, copy)
  shard = next(n for n in sorted(os.listdir(copy)) if "-train." in n)
  if fmt == "tfrecord":
    with open(copy / shard, "r+b") as f:
      f.truncate(os.path.getsize(copy / shard) - 7)
    with pytest.raises(celeba.CelebAError, match=f"{shard}.*damaged"):
      celeba.open_source(str(tmp_path / "empty"), str(tmp_path / "tfds"),
                         cache_dir=str(tmp_path))
  os.remove(copy / shard)
  with pytest.raises(celeba.CelebAError, match=f"{shard} is listed in "
                     "dataset_info.json but missing"):
    celeba.open_source(str(tmp_path / "empty"), str(tmp_path / "tfds"),
                       cache_dir=str(tmp_path))


def test_no_celeba_anywhere_names_both_options(tmp_path):
  with pytest.raises(celeba.CelebAError) as e:
    celeba.open_source(str(tmp_path / "files"), str(tmp_path / "tfds"))
  msg = str(e.value)
  for needle in ("img_align_celeba/", "list_attr_celeba.txt",
                 "list_eval_partition.txt", "--config.celeba_dir",
                 "tfds build celeb_a", "--config.tfds_dir",
                 str(tmp_path / "tfds")):
    assert needle in msg


def test_celeba_smoke_run_from_tfds(files_root, tmp_path):
  tfds_dir = str(tmp_path / "tfds")
  _prepare(files_root, tfds_dir, "array_record")
  run_python(["-m", "experiments.selftrain",
              "--config=experiments/configs/selftrain.py:celeba,smoke",
              f"--config.celeba_dir={tmp_path / 'no_files'}",
              f"--config.tfds_dir={tfds_dir}", f"--workdir={tmp_path / 'w'}"])
  res = json.loads((tmp_path / "w" / "results.json").read_text())
  assert res["data"].startswith("TFDS")
  assert res["sizes"]["test"] == int(
      (celeba.open_source(files_root).annotations.partition == 2).sum())
