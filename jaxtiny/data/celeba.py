"""CelebA from its standard files, and the group sampler of the self-training
experiment (blond hair as the spurious feature for gender).

Expected layout under the CelebA root (`--config.celeba_dir`, or
`$JAXTINY_DATA/celeba`):

  img_align_celeba/000001.jpg ...   the aligned and cropped 178x218 images
  list_attr_celeba.txt              line 1: count; line 2: the 40 attribute
                                    names; then "000001.jpg -1 1 ..." per image
  list_eval_partition.txt           "000001.jpg 0" (0 train, 1 val, 2 test)

These are the files of the official release (Google Drive "Align&Cropped
Images" and "Anno"/"Eval" folders). Images are centre-cropped to 178x178,
resized to `size` x `size` (bilinear) and scaled to [-1, 1]; the decoded
arrays are cached as .npy next to the images so later runs skip decoding.

Or TFDS's `celeb_a`, already prepared (`tfds build celeb_a`, either file
format: TFRecord, TensorFlow's default, or ArrayRecord) under
`--config.tfds_dir` / `$TFDS_DATA_DIR` / `~/tensorflow_datasets`; it is read
without TensorFlow and without a download. TFDS stores the original JPEG
bytes and keys each record by its file name, in an order fixed by a salted
hash of that name; the reader inverts that order, so both sources give the
same rows in the same order (official file order) and the same pixels, and a
run picks the same images from either. `open_source` takes the official
files when present, TFDS otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import struct
from typing import Callable, Sequence

import numpy as np

from jaxtiny import fileio
from jaxtiny.data import datasets

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
PARTITIONS = {"train": 0, "val": 1, "test": 2}


class CelebAError(RuntimeError):
  """Missing or malformed CelebA files; the message says what to put where."""


def default_root(data_dir: str | None = None) -> str:
  base = data_dir or os.environ.get("JAXTINY_DATA") or os.path.join(
      os.path.expanduser("~"), ".cache", "jaxtiny")
  return os.path.join(base, "celeba")


def _missing_files(root: str) -> list[str]:
  return [name for name in (ATTR_FILE, PARTITION_FILE, IMAGE_DIR)
          if not os.path.exists(os.path.join(root, name))]


def check_root(root: str) -> None:
  missing = _missing_files(root)
  if missing:
    raise CelebAError(
        f"CelebA not found under {root}: missing {', '.join(missing)}. Put the "
        f"official files there: {IMAGE_DIR}/ (the aligned & cropped JPEGs, "
        f"000001.jpg ...), {ATTR_FILE} and {PARTITION_FILE}; or pass "
        "--config.celeba_dir=DIR. CelebA cannot be downloaded by this "
        "project (no network); get it from the CelebA website.")


@dataclasses.dataclass(frozen=True)
class Annotations:
  filenames: tuple[str, ...]
  attr_names: tuple[str, ...]
  attrs: np.ndarray            # int8 [N, 40] in {0, 1}
  partition: np.ndarray        # int8 [N] in {0, 1, 2}

  def attr(self, name: str) -> np.ndarray:
    if name not in self.attr_names:
      raise CelebAError(f"unknown CelebA attribute {name!r}; known: "
                        f"{', '.join(self.attr_names)}.")
    return self.attrs[:, self.attr_names.index(name)]


def read_annotations(root: str) -> Annotations:
  """Parses the attribute and partition files (and checks they agree)."""
  check_root(root)
  path = os.path.join(root, ATTR_FILE)
  with open(path) as f:
    lines = f.read().splitlines()
  try:
    count = int(lines[0].strip())
  except (IndexError, ValueError):
    raise CelebAError(f"{path}: line 1 must be the image count.") from None
  names = tuple(lines[1].split())
  files, rows = [], []
  for i, line in enumerate(lines[2:2 + count], start=3):
    parts = line.split()
    if len(parts) != len(names) + 1:
      raise CelebAError(f"{path}:{i}: expected a filename and {len(names)} "
                        f"values, got {len(parts)} fields.")
    files.append(parts[0])
    rows.append([1 if v == "1" else 0 for v in parts[1:]])
  if len(files) != count:
    raise CelebAError(f"{path}: header says {count} images, found {len(files)}.")
  ppath = os.path.join(root, PARTITION_FILE)
  part = {}
  with open(ppath) as f:
    for i, line in enumerate(f, start=1):
      parts = line.split()
      if not parts:
        continue
      if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
        raise CelebAError(f"{ppath}:{i}: expected 'FILE 0|1|2', got {line!r}.")
      part[parts[0]] = int(parts[1])
  missing = [fn for fn in files if fn not in part]
  if missing:
    raise CelebAError(f"{ppath}: no partition for {len(missing)} images "
                      f"(first: {missing[0]}).")
  return Annotations(tuple(files), names, np.asarray(rows, np.int8),
                     np.asarray([part[fn] for fn in files], np.int8))


def _decode(path_or_bytes: str | bytes, size: int) -> np.ndarray:
  from PIL import Image
  if isinstance(path_or_bytes, bytes):
    path_or_bytes = io.BytesIO(path_or_bytes)
  with Image.open(path_or_bytes) as im:
    im = im.convert("RGB")
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side))
    im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, np.uint8)


def load_images(root: str, filenames: Sequence[str], size: int = 32
                ) -> np.ndarray:
  """uint8 [N, size, size, 3] for `filenames`, cached after the first call."""
  key = hashlib.sha256(("\n".join(filenames) + f"|{size}").encode()).hexdigest()
  cache = os.path.join(root, f"cache_{size}px_{key[:16]}.npy")
  if os.path.exists(cache):
    return np.load(cache)
  out = np.empty((len(filenames), size, size, 3), np.uint8)
  for i, fn in enumerate(filenames):
    path = os.path.join(root, IMAGE_DIR, fn)
    if not os.path.exists(path):
      raise CelebAError(f"{path} is listed in {ATTR_FILE} but missing; the "
                        f"{IMAGE_DIR}/ folder is incomplete.")
    out[i] = _decode(path, size)
  try:
    fileio.atomic_write_bytes(cache, _npy_bytes(out))
  except OSError:
    pass                                   # A read-only dataset folder is fine.
  return out


def _npy_bytes(a: np.ndarray) -> bytes:
  buf = io.BytesIO()
  np.save(buf, a)
  return buf.getvalue()


# ------------------------------------------------------------------ TFDS --

TFDS_NAME = "celeb_a"
TFDS_SPLITS = (("train", 0), ("validation", 1), ("test", 2))


def default_tfds_dir(tfds_dir: str | None = None) -> str:
  return os.path.expanduser(tfds_dir or os.environ.get("TFDS_DATA_DIR")
                            or os.path.join("~", "tensorflow_datasets"))


def tfds_version_dir(tfds_dir: str, name: str = TFDS_NAME) -> str | None:
  """`<tfds_dir>/<name>/<highest prepared version>`, or None."""
  base = os.path.join(tfds_dir, name)
  if not os.path.isdir(base):
    return None
  def version(v):
    try:
      return tuple(int(x) for x in v.split("."))
    except ValueError:
      return None
  done = [v for v in os.listdir(base) if version(v) is not None
          and os.path.exists(os.path.join(base, v, "dataset_info.json"))]
  return os.path.join(base, max(done, key=version)) if done else None


def _tfrecord_offsets(path: str) -> list[tuple[int, int]]:
  """(offset, length) of every record's payload in a TFRecord file.

  Framing per record: uint64 length, uint32 masked CRC of the length, the
  payload, uint32 masked CRC of the payload (little-endian). The CRCs are
  not checked (no CRC32C in the standard library); a truncated file is.
  """
  out, size = [], os.path.getsize(path)
  with open(path, "rb") as f:
    pos = 0
    while pos < size:
      head = f.read(12)
      if len(head) < 12:
        raise CelebAError(f"{path}: truncated TFRecord header at byte {pos}; "
                          "the TFDS files are damaged, prepare them again.")
      (n,) = struct.unpack("<Q", head[:8])
      if pos + 12 + n + 4 > size:
        raise CelebAError(f"{path}: record at byte {pos} runs past the end of "
                          "the file; the TFDS files are damaged, prepare "
                          "them again.")
      out.append((pos + 12, n))
      pos += 12 + n + 4
      f.seek(pos)
  return out


class _ShardReader:
  """Reads records by position from one TFDS shard (TFRecord or ArrayRecord)."""

  def __init__(self, path: str, file_format: str):
    self.path, self.format = path, file_format
    if file_format == "tfrecord":
      self._offsets = _tfrecord_offsets(path)
    elif file_format == "array_record":
      from array_record.python import array_record_module
      self._reader = array_record_module.ArrayRecordReader(path)
    else:
      raise CelebAError(f"{path}: TFDS file format {file_format!r} is not "
                        "readable here; prepare celeb_a as tfrecord or "
                        "array_record.")

  def __len__(self) -> int:
    if self.format == "tfrecord":
      return len(self._offsets)
    return self._reader.num_records()

  def read(self, positions: Sequence[int]) -> list[bytes]:
    if self.format == "array_record":
      return list(self._reader.read(list(positions)))
    with open(self.path, "rb") as f:
      out = []
      for i in positions:
        off, n = self._offsets[i]
        f.seek(off)
        out.append(f.read(n))
      return out


def _tfds_info(version_dir: str) -> dict:
  with open(os.path.join(version_dir, "dataset_info.json")) as f:
    return json.load(f)


def _shard_paths(version_dir: str, info: dict, split: str
                 ) -> tuple[str, list[str], list[int]]:
  from tensorflow_datasets.core import naming
  fmt = info.get("fileFormat", "tfrecord")
  split_info = [s for s in info.get("splits", []) if s["name"] == split]
  if not split_info:
    raise CelebAError(f"{version_dir}: no {split!r} split in "
                      "dataset_info.json; prepare celeb_a again.")
  lengths = [int(n) for n in split_info[0]["shardLengths"]]
  template = naming.ShardedFileTemplate(
      data_dir=version_dir, dataset_name=info["name"], split=split,
      filetype_suffix=fmt,
      template=split_info[0].get("filepathTemplate")
      or naming.DEFAULT_FILENAME_TEMPLATE)
  paths = [os.fspath(p) for p in template.sharded_filepaths(len(lengths))]
  return fmt, paths, lengths


@dataclasses.dataclass(frozen=True)
class Source:
  """CelebA rows (official file order) and a way to get their pixels."""
  annotations: Annotations
  origin: str
  _images: Callable[[np.ndarray, int], np.ndarray]

  def images(self, indices: Sequence[int], size: int = 32) -> np.ndarray:
    """uint8 [len(indices), size, size, 3] for annotation rows `indices`."""
    return self._images(np.asarray(indices, np.int64), size)


def files_source(root: str) -> Source:
  ann = read_annotations(root)
  return Source(ann, f"official files ({root})",
                lambda idx, size: load_images(
                    root, [ann.filenames[i] for i in idx], size))


def tfds_source(version_dir: str, cache_dir: str | None = None) -> Source:
  """CelebA from a prepared TFDS `celeb_a` folder (`.../celeb_a/2.1.0`).

  Reads every record's attributes once (the image bytes are not decoded) and
  caches them with the record locations in `cache_dir` (default: the
  version folder when writable), keyed by dataset_info.json.
  """
  from tensorflow_datasets.proto import tf_example_pb2
  try:
    info = _tfds_info(version_dir)
  except (OSError, ValueError) as e:
    raise CelebAError(f"{version_dir}/dataset_info.json cannot be read ({e}); "
                      "prepare celeb_a again.") from None
  cache_dir = cache_dir or version_dir
  key = hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()
  cache = os.path.join(cache_dir, f"jaxtiny_annotations_{key[:16]}.npz")
  shards = {}                              # split -> (format, paths, lengths)
  for split, _ in TFDS_SPLITS:
    shards[split] = _shard_paths(version_dir, info, split)
  readers: dict[str, _ShardReader] = {}

  def reader(split, shard):
    fmt, paths, _ = shards[split]
    if paths[shard] not in readers:
      if not os.path.exists(paths[shard]):
        raise CelebAError(f"{paths[shard]} is listed in dataset_info.json but "
                          "missing; prepare celeb_a again.")
      readers[paths[shard]] = _ShardReader(paths[shard], fmt)
    return readers[paths[shard]]

  if os.path.exists(cache):
    with np.load(cache) as z:
      names, attrs = tuple(str(n) for n in z["attr_names"]), z["attrs"]
      partition, loc = z["partition"], z["loc"]
  else:
    rows, loc, partition, names = [], [], [], None
    for split, part in TFDS_SPLITS:
      # Stored position -> official position within the split: TFDS sorts
      # the records by the salted hash of their key (the file name).
      n = sum(shards[split][2])
      offset = sum(int(sum(shards[s][2])) for s, p in TFDS_SPLITS if p < part)
      # The official partition numbers its files consecutively: train, then
      # validation, then test.
      files = [f"{offset + j + 1:06d}.jpg" for j in range(n)]
      official = datasets.tfds_official_order(split, files)
      split_rows = [None] * n
      split_loc = [None] * n
      stored = 0
      for shard, length in enumerate(shards[split][2]):
        r = reader(split, shard)
        if len(r) != length:
          raise CelebAError(f"{r.path}: {len(r)} records, dataset_info.json "
                            f"says {length}; prepare celeb_a again.")
        for pos, rec in enumerate(r.read(range(length))):
          ex = tf_example_pb2.Example.FromString(rec)
          feat = ex.features.feature
          if names is None:
            names = tuple(sorted(k.split("/", 1)[1] for k in feat
                                 if k.startswith("attributes/")))
            if not names or "image" not in feat:
              raise CelebAError(f"{r.path}: records have no image/attributes "
                                "features; is this TFDS's celeb_a?")
          j = official[stored]
          split_rows[j] = [int(feat["attributes/" + a].int64_list.value[0])
                           for a in names]
          split_loc[j] = (part, shard, pos)
          stored += 1
      rows += split_rows
      loc += split_loc
      partition += [part] * n
    attrs = np.asarray(rows, np.int8)
    partition, loc = np.asarray(partition, np.int8), np.asarray(loc, np.int64)
    buf = io.BytesIO()
    np.savez(buf, attr_names=np.asarray(names), attrs=attrs,
             partition=partition, loc=loc)
    try:
      fileio.atomic_write_bytes(cache, buf.getvalue())
    except OSError:
      pass                                 # A read-only folder is fine.
  files = tuple(f"{i + 1:06d}.jpg" for i in range(len(partition)))
  ann = Annotations(files, names, attrs, partition)
  split_of = {p: s for s, p in TFDS_SPLITS}

  def images(idx: np.ndarray, size: int) -> np.ndarray:
    key = hashlib.sha256(idx.tobytes() + f"|{size}".encode()).hexdigest()
    img_cache = os.path.join(cache_dir, f"jaxtiny_{size}px_{key[:16]}.npy")
    if os.path.exists(img_cache):
      return np.load(img_cache)
    out = np.empty((len(idx), size, size, 3), np.uint8)
    by_shard: dict[tuple[int, int], list[int]] = {}
    for k, i in enumerate(idx):
      by_shard.setdefault((int(loc[i, 0]), int(loc[i, 1])), []).append(k)
    for (part, shard), ks in sorted(by_shard.items()):
      recs = reader(split_of[part], shard).read([int(loc[idx[k], 2]) for k in ks])
      for k, rec in zip(ks, recs):
        ex = tf_example_pb2.Example.FromString(rec)
        out[k] = _decode(bytes(ex.features.feature["image"].bytes_list.value[0]),
                         size)
    try:
      fileio.atomic_write_bytes(img_cache, _npy_bytes(out))
    except OSError:
      pass
    return out

  return Source(ann, f"TFDS {info.get('name', TFDS_NAME)} "
                f"{info.get('version', '?')} ({version_dir})", images)


def open_source(root: str, tfds_dir: str | None = None,
                cache_dir: str | None = None) -> Source:
  """The official files under `root` if present, else prepared TFDS celeb_a."""
  missing = _missing_files(root)
  if not missing:
    return files_source(root)
  tdir = default_tfds_dir(tfds_dir)
  version_dir = tfds_version_dir(tdir)
  if version_dir is not None:
    return tfds_source(version_dir, cache_dir)
  raise CelebAError(
      f"CelebA not found. Official files: nothing usable under {root} "
      f"(missing {', '.join(missing)}); put {IMAGE_DIR}/ (the aligned & "
      f"cropped JPEGs, 000001.jpg ...), {ATTR_FILE} and {PARTITION_FILE} "
      "there, or pass --config.celeba_dir=DIR. TFDS: no prepared "
      f"{TFDS_NAME} under {tdir} (`tfds build {TFDS_NAME}` on a machine "
      "with network access prepares it; then copy the folder, or pass "
      "--config.tfds_dir=DIR). CelebA cannot be downloaded by this project "
      "(no network); get it from the CelebA website.")


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1]."""
  return images.astype(np.float32) / 127.5 - 1.0


# The paper's groups: (label = Male, spurious = Blond_Hair).
PAPER_SOURCE = {(1, 1): 1250, (0, 0): 1749}
PAPER_TARGET = {(0, 0): 25658, (1, 0): 23591, (0, 1): 8055, (1, 1): 499}


def group_indices(ann: Annotations, label: str, spurious: str,
                  counts: dict[tuple[int, int], int], partition: str,
                  rng: np.random.Generator,
                  exclude: np.ndarray | None = None) -> np.ndarray:
  """Random image indices of `partition` with exactly counts[(y, s)] images
  of each (label, spurious) group, disjoint from `exclude`; -1 as a count
  takes the whole group."""
  y, s = ann.attr(label), ann.attr(spurious)
  in_part = ann.partition == PARTITIONS[partition]
  taken = np.zeros(len(y), bool)
  if exclude is not None:
    taken[exclude] = True
  picks = []
  for (gy, gs), n in sorted(counts.items()):
    pool = np.flatnonzero(in_part & (y == gy) & (s == gs) & ~taken)
    if n == -1:
      n = len(pool)
    if n > len(pool):
      raise CelebAError(
          f"the {partition} partition has {len(pool)} unused images with "
          f"{label}={gy}, {spurious}={gs}; {n} were asked for.")
    picks.append(rng.choice(pool, n, replace=False))
  return np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)


def write_fixture(root: str, num_images: int = 64, seed: int = 0,
                  size: tuple[int, int] = (178, 218)) -> Annotations:
  """A tiny CelebA in the official layout (random JPEGs, random attributes,
  partitions 60/20/20 %) for tests."""
  from PIL import Image
  rng = np.random.default_rng(seed)
  names = ["5_o_Clock_Shadow", "Blond_Hair", "Male", "Smiling"]
  os.makedirs(os.path.join(root, IMAGE_DIR), exist_ok=True)
  files = [f"{i + 1:06d}.jpg" for i in range(num_images)]
  attrs = rng.integers(0, 2, (num_images, len(names)))
  for fn, a in zip(files, attrs):
    # Blond images are brighter: a learnable spurious cue for the smoke run.
    base = 60 + 120 * a[1]
    img = np.clip(rng.normal(base, 30, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(img.astype(np.uint8)).save(os.path.join(root, IMAGE_DIR, fn))
  with open(os.path.join(root, ATTR_FILE), "w") as f:
    f.write(f"{num_images}\n{' '.join(names)}\n")
    for fn, a in zip(files, attrs):
      f.write(fn + " " + " ".join("1" if v else "-1" for v in a) + "\n")
  part = np.repeat([0, 1, 2], [int(0.6 * num_images), int(0.2 * num_images),
                               num_images - int(0.6 * num_images)
                               - int(0.2 * num_images)])
  with open(os.path.join(root, PARTITION_FILE), "w") as f:
    for fn, p in zip(files, part):
      f.write(f"{fn} {p}\n")
  return read_annotations(root)
