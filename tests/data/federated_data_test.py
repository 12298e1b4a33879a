"""Federated partitions (every record exactly once) and the TFF EMNIST reader."""

import h5py
import numpy as np
import pytest

from jaxtiny.data import federated


def _labels(n=5000, seed=0):
  return np.random.default_rng(seed).integers(0, 10, n)


def _assert_exact_cover(part, n):
  assert part.offsets[0] == 0 and part.offsets[-1] == n
  np.testing.assert_array_equal(np.sort(part.order), np.arange(n))
  assert sum(len(part.user(u)) for u in range(part.num_users)) == n


def test_iid_partition_covers_every_record_once_with_equal_sizes():
  part = federated.partition_iid(1003, 10, seed=1)
  _assert_exact_cover(part, 1003)
  assert part.sizes.max() - part.sizes.min() <= 1
  assert part.same_as(federated.partition_iid(1003, 10, seed=1))
  assert not part.same_as(federated.partition_iid(1003, 10, seed=2))


@pytest.mark.parametrize("seed", range(3))
def test_non_iid_partition_is_exact_concentrated_and_heavy_tailed(seed):
  labels = _labels(seed=seed)
  part = federated.partition_non_iid(labels, 50, seed)
  _assert_exact_cover(part, len(labels))
  d = part.describe(labels)
  # Mostly one or two classes per user (IID would give ~0.2 here).
  assert d["top2_class_share_mean"] > 0.8
  # Heavy tail: the largest user is several times the median one.
  assert d["size_max"] > 3 * d["size_median"] and d["size_min"] >= 8
  assert part.same_as(federated.partition_non_iid(labels, 50, seed))


def test_iid_users_see_all_classes():
  labels = _labels()
  d = federated.partition_iid(len(labels), 20, 0).describe(labels)
  assert d["classes_per_user_mean"] == 10 and d["top2_class_share_mean"] < 0.35


def test_heavy_tailed_sizes_sum_exactly():
  rng = np.random.default_rng(0)
  for total, users in ((60000, 100), (101, 7), (50, 50)):
    sizes = federated.heavy_tailed_sizes(total, users, rng, 1.0, min_size=1)
    assert sizes.sum() == total and sizes.min() >= 1


def test_partition_errors_and_save_load(tmp_path):
  with pytest.raises(ValueError, match="num_users=20"):
    federated.partition_iid(10, 20, 0)
  with pytest.raises(ValueError, match="labels must be integers"):
    federated.partition_non_iid(np.array([0, 1, 12, 3]), 2, 0)
  with pytest.raises(ValueError, match="at least one record"):
    federated.Partition(np.arange(3), np.array([0, 0, 3]), "iid")
  part = federated.partition_non_iid(_labels(500), 10, 0)
  part.save(str(tmp_path / "p.npz"))
  assert federated.Partition.load(str(tmp_path / "p.npz")).same_as(part)


def _write_tff(path, clients, white_background=True):
  """A TFF-layout EMNIST file: examples/<id>/pixels [n, 28, 28] float, label [n]."""
  with h5py.File(path, "w") as f:
    ex = f.create_group("examples")
    for cid, (ink, labels) in clients.items():
      g = ex.create_group(cid)
      g.create_dataset("pixels", data=(1.0 - ink) if white_background else ink)
      g.create_dataset("label", data=labels)


def _clients(seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for cid, n in (("f0000_14", 3), ("f0001_41", 5), ("f0002_01", 1)):
    ink = np.zeros((n, 28, 28), np.float32)
    ink[:, 8:20, 10:18] = rng.integers(1, 256, (n, 12, 8)) / 255.0
    out[cid] = (ink, rng.integers(0, 10, n).astype(np.int32))
  return out


@pytest.mark.parametrize("white", [True, False])
def test_tff_emnist_reader(tmp_path, white):
  clients = _clients()
  path = str(tmp_path / "fed_emnist_digitsonly_train.h5")
  _write_tff(path, clients, white_background=white)
  x, y, part, ids = federated.load_tff_emnist(path)
  assert ids == sorted(clients)
  assert x.shape == (9, 28, 28, 1) and x.dtype == np.uint8
  assert list(part.sizes) == [3, 5, 1] and part.kind == "fed_emnist"
  for u, cid in enumerate(ids):
    ink, labels = clients[cid]
    np.testing.assert_array_equal(y[part.user(u)], labels)
    # Either polarity comes back as MNIST's: background 0, ink bright.
    np.testing.assert_array_equal(x[part.user(u), ..., 0], np.round(ink * 255).astype(np.uint8))
  x2, _, part2, _ = federated.load_tff_emnist(path, max_users=2)
  assert len(x2) == 8 and part2.num_users == 2


def test_tff_emnist_reader_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="fed_emnist"):
    federated.load_tff_emnist(str(tmp_path / "missing.h5"))
  clients = _clients()
  bad = dict(clients)
  bad["f0001_41"] = (clients["f0001_41"][0][:, :20], clients["f0001_41"][1])
  _write_tff(str(tmp_path / "shape.h5"), bad)
  with pytest.raises(ValueError, match="client 'f0001_41' field 'pixels'"):
    federated.load_tff_emnist(str(tmp_path / "shape.h5"))
  bad = dict(clients)
  bad["f0002_01"] = (clients["f0002_01"][0], np.array([12], np.int32))
  _write_tff(str(tmp_path / "label.h5"), bad)
  with pytest.raises(ValueError, match="client 'f0002_01' field 'label'"):
    federated.load_tff_emnist(str(tmp_path / "label.h5"))
  with h5py.File(str(tmp_path / "nolabel.h5"), "w") as f:
    f.create_group("examples").create_group("u1").create_dataset(
        "pixels", data=np.zeros((2, 28, 28), np.float32))
  with pytest.raises(ValueError, match="client 'u1' has no 'label'"):
    federated.load_tff_emnist(str(tmp_path / "nolabel.h5"))
