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
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Sequence

import numpy as np

from jaxtiny import fileio

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


def check_root(root: str) -> None:
  missing = [name for name in (ATTR_FILE, PARTITION_FILE, IMAGE_DIR)
             if not os.path.exists(os.path.join(root, name))]
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


def _decode(path: str, size: int) -> np.ndarray:
  from PIL import Image
  with Image.open(path) as im:
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
  import io
  buf = io.BytesIO()
  np.save(buf, a)
  return buf.getvalue()


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
