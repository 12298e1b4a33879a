"""Federated data: records split into users.

A `Partition` assigns every record of a dataset to exactly one user: `order`
lists record indices grouped by user and `offsets[u]:offsets[u + 1]` is user
u's slice of it. Three sources:

* `partition_iid`: a seeded permutation cut into near-equal users;
* `partition_non_iid`: each user holds mostly one or two classes
  (`dominant_share` of its records), with user sizes drawn from a heavy-tailed
  (log-normal) distribution;
* `load_tff_emnist`: the real Federated EMNIST users (one per writer) from
  TensorFlow Federated's HDF5 files (`examples/<client_id>/pixels` and
  `examples/<client_id>/label`).
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Optional

import numpy as np

from jaxtiny import fileio

TFF_EMNIST_FILES = {"train": "fed_emnist_digitsonly_train.h5",
                    "test": "fed_emnist_digitsonly_test.h5"}


@dataclasses.dataclass(frozen=True)
class Partition:
  """Records grouped by user.

  Attributes:
    order: [N] record indices, user by user.
    offsets: [U + 1] int64; user u holds order[offsets[u]:offsets[u + 1]].
    kind: "iid", "non_iid" or "fed_emnist".
  """
  order: np.ndarray
  offsets: np.ndarray
  kind: str

  def __post_init__(self):
    off = np.asarray(self.offsets)
    if off.ndim != 1 or len(off) < 2 or off[0] != 0 or off[-1] != len(self.order):
      raise ValueError("offsets must start at 0 and end at len(order).")
    if np.any(np.diff(off) < 1):
      raise ValueError("every user must hold at least one record.")

  @property
  def num_users(self) -> int:
    return len(self.offsets) - 1

  @property
  def sizes(self) -> np.ndarray:
    return np.diff(self.offsets)

  def user(self, u: int) -> np.ndarray:
    """Record indices of user u."""
    return self.order[self.offsets[u]:self.offsets[u + 1]]

  def describe(self, labels: np.ndarray, num_classes: int = 10) -> dict:
    """Summary for results: sizes and how concentrated users' labels are."""
    top2, classes = [], []
    for u in range(self.num_users):
      counts = np.bincount(labels[self.user(u)], minlength=num_classes)
      share = np.sort(counts)[::-1] / counts.sum()
      top2.append(share[:2].sum())
      classes.append(int(np.sum(counts > 0)))
    sizes = self.sizes
    return {"kind": self.kind, "users": self.num_users, "records": int(sizes.sum()),
            "size_min": int(sizes.min()), "size_median": float(np.median(sizes)),
            "size_max": int(sizes.max()),
            "top2_class_share_mean": float(np.mean(top2)),
            "classes_per_user_mean": float(np.mean(classes))}

  def save(self, path: str) -> None:
    buf = io.BytesIO()
    np.savez(buf, order=self.order, offsets=self.offsets, kind=np.array(self.kind))
    fileio.atomic_write_bytes(path, buf.getvalue())

  @classmethod
  def load(cls, path: str) -> "Partition":
    with np.load(path) as f:
      return cls(order=f["order"], offsets=f["offsets"], kind=str(f["kind"]))

  def same_as(self, other: "Partition") -> bool:
    return (self.kind == other.kind and np.array_equal(self.order, other.order)
            and np.array_equal(self.offsets, other.offsets))


def _check_users(num_records: int, num_users: int) -> None:
  if not 1 <= num_users <= num_records:
    raise ValueError(f"num_users={num_users} must be in [1, {num_records}] "
                     "(every user needs at least one record).")


def partition_iid(num_records: int, num_users: int, seed: int) -> Partition:
  """Near-equal users (sizes differ by at most one) of a seeded permutation."""
  _check_users(num_records, num_users)
  order = np.random.default_rng([seed, 11]).permutation(num_records)
  sizes = np.full(num_users, num_records // num_users)
  sizes[:num_records % num_users] += 1
  return Partition(order, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), "iid")


def heavy_tailed_sizes(total: int, num_users: int, rng: np.random.Generator,
                       sigma: float = 1.0, min_size: int = 1) -> np.ndarray:
  """Integer sizes >= min_size summing to `total`, log-normal(0, sigma) shaped."""
  if num_users * min_size > total:
    raise ValueError(f"{num_users} users of at least {min_size} records need "
                     f"{num_users * min_size} records; the dataset has {total}.")
  w = rng.lognormal(0.0, sigma, num_users)
  spare = total - num_users * min_size
  raw = w / w.sum() * spare
  sizes = np.floor(raw).astype(np.int64)
  # Largest remainders get the last records, so the sum is exact.
  rest = spare - sizes.sum()
  sizes[np.argsort(raw - sizes)[::-1][:rest]] += 1
  return sizes + min_size


def partition_non_iid(labels: np.ndarray, num_users: int, seed: int, *,
                      num_classes: int = 10, dominant_share: float = 0.9,
                      size_sigma: float = 1.0, min_size: int = 8) -> Partition:
  """Users holding mostly one or two classes, with heavy-tailed sizes.

  Each user draws its size (log-normal, `size_sigma`), one or two dominant
  classes (chosen with probability proportional to the records each class
  still has, so classes run out evenly), and takes `dominant_share` of its
  records from them and the rest from the remaining pool at large. When a
  class runs out, the shortfall comes from the fullest classes, so every
  record is assigned exactly once.
  """
  labels = np.asarray(labels)
  n = len(labels)
  _check_users(n, num_users)
  if not 0 <= dominant_share <= 1:
    raise ValueError(f"dominant_share={dominant_share} must be in [0, 1].")
  rng = np.random.default_rng([seed, 13])
  sizes = heavy_tailed_sizes(n, num_users, rng, size_sigma, min(min_size, n // num_users))
  pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in range(num_classes)]
  if sum(len(p) for p in pools) != n:
    raise ValueError(f"labels must be integers in [0, {num_classes}).")

  def take(c: int, k: int) -> list:
    out = pools[c][-k:] if k else []
    del pools[c][len(pools[c]) - len(out):]
    return out

  def take_any(k: int) -> list:
    out = []
    while len(out) < k:
      c = int(np.argmax([len(p) for p in pools]))
      out += take(c, min(k - len(out), len(pools[c])))
    return out

  users = []
  for size in sizes:
    left = np.array([len(p) for p in pools], np.float64)
    n_dom = int(rng.integers(1, 3))
    dom = rng.choice(num_classes, size=min(n_dom, int(np.sum(left > 0))), replace=False,
                     p=left / left.sum())
    want = int(round(dominant_share * size))
    got = []
    for i, c in enumerate(dom):
      share = want // len(dom) + (1 if i < want % len(dom) else 0)
      got += take(int(c), min(share, len(pools[c])))
    # The rest: from the pool at large, proportionally to what is left.
    while len(got) < size:
      left = np.array([len(p) for p in pools], np.float64)
      c = int(rng.choice(num_classes, p=left / left.sum()))
      got += take(c, 1)
    users.append(np.asarray(got, np.int64))
  assert not any(pools), "partition left records unassigned"
  order = np.concatenate(users)
  offsets = np.concatenate([[0], np.cumsum([len(u) for u in users])]).astype(np.int64)
  return Partition(order, offsets, "non_iid")


# --- Federated EMNIST (TensorFlow Federated HDF5 layout) ---------------------


def tff_emnist_path(data_dir: str, split: str) -> str:
  """Where the TFF digits-only file of `split` is expected."""
  if split not in TFF_EMNIST_FILES:
    raise ValueError(f"split={split!r}: use 'train' or 'test'.")
  return os.path.join(data_dir, "fed_emnist", TFF_EMNIST_FILES[split])


def load_tff_emnist(path: str, *, invert: Optional[bool] = None, num_classes: int = 10,
                    max_users: int = 0) -> tuple[np.ndarray, np.ndarray, Partition, list[str]]:
  """Reads a TensorFlow Federated EMNIST HDF5 file.

  Layout: group `examples`, one subgroup per client id with datasets
  `pixels` [n, 28, 28] (float in [0, 1], or uint8) and `label` [n] (int).
  TFF stores ink dark on a white background (pixel 1.0 = background); with
  `invert=None` the polarity is detected from the data (mean pixel > 0.5
  means a white background) and images are flipped to MNIST's convention
  (background 0), as uint8.

  Returns:
    (images uint8 [N, 28, 28, 1], labels int32 [N], partition with one user
    per client in sorted client-id order, client ids).

  Raises:
    FileNotFoundError: the file is missing (the message says where to get it).
    ValueError: a client's data is malformed (names the client and field).
  """
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # pragma: no cover - h5py is a dependency.
    raise ImportError("reading Federated EMNIST needs h5py: pip install h5py") from e
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"Federated EMNIST file not found: {path}. Get TensorFlow Federated's "
        "digits-only EMNIST (fed_emnist_digitsonly.tar.bz2 from the tff-datasets-public "
        "bucket, or tff.simulation.datasets.emnist.load_data(only_digits=True) which "
        "caches it), and put fed_emnist_digitsonly_train.h5 and "
        "fed_emnist_digitsonly_test.h5 in <data_dir>/fed_emnist/.")
  images, labels, ids = [], [], []
  with h5py.File(path, "r") as f:
    if "examples" not in f:
      raise ValueError(f"{path}: no 'examples' group; not a TFF EMNIST file.")
    clients = sorted(f["examples"].keys())
    if max_users:
      clients = clients[:max_users]
    for cid in clients:
      g = f["examples"][cid]
      for field in ("pixels", "label"):
        if field not in g:
          raise ValueError(f"{path}: client {cid!r} has no '{field}' dataset.")
      px, lab = np.asarray(g["pixels"]), np.asarray(g["label"]).reshape(-1)
      if px.ndim == 4 and px.shape[-1] == 1:
        px = px[..., 0]
      if px.ndim != 3 or px.shape[1:] != (28, 28):
        raise ValueError(f"{path}: client {cid!r} field 'pixels' has shape {px.shape}; "
                         "expected [n, 28, 28].")
      if len(lab) != len(px) or len(px) == 0:
        raise ValueError(f"{path}: client {cid!r} has {len(px)} 'pixels' but "
                         f"{len(lab)} 'label' entries (need the same, at least one).")
      if not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= num_classes:
        raise ValueError(f"{path}: client {cid!r} field 'label' must hold integers in "
                         f"[0, {num_classes}); got {lab.dtype} in [{lab.min()}, {lab.max()}].")
      if px.dtype == np.uint8:
        px = px.astype(np.float32) / 255.0
      elif np.issubdtype(px.dtype, np.floating):
        if px.min() < 0 or px.max() > 1:
          raise ValueError(f"{path}: client {cid!r} field 'pixels' has values in "
                           f"[{px.min()}, {px.max()}]; expected [0, 1].")
      else:
        raise ValueError(f"{path}: client {cid!r} field 'pixels' has dtype {px.dtype}; "
                         "expected float in [0, 1] or uint8.")
      images.append(px.astype(np.float32))
      labels.append(lab.astype(np.int32))
      ids.append(cid)
  if not ids:
    raise ValueError(f"{path}: the 'examples' group holds no clients.")
  x = np.concatenate(images)
  if invert is None:
    invert = float(x.mean()) > 0.5
  if invert:
    x = 1.0 - x
  x = np.round(x * 255.0).astype(np.uint8)[..., None]
  sizes = [len(lab) for lab in labels]
  offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
  part = Partition(np.arange(len(x), dtype=np.int64), offsets, "fed_emnist")
  return x, np.concatenate(labels), part, ids
