"""Reads PyTorch checkpoint files (`torch.save` of a state dict) without torch.

Weights for standard metrics are usually distributed as PyTorch files (the FID
Inception-v3 port, `pt_inception-2015-12-05-6726825d.pth`, is one). This
module reads both formats `torch.save` writes into a flat {name: np.ndarray}:

* the zip format (PyTorch >= 1.6): `<root>/data.pkl` plus one raw file per
  storage under `<root>/data/<key>`, byte order in `<root>/byteorder`;
* the legacy format: a magic number, protocol version and system info
  pickle, the object pickle, the list of storage keys, then each storage as an
  int64 element count followed by its raw bytes.

The object pickle is read with a restricted unpickler that only builds ordered
dicts, tensors (`torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`) and
storages; anything else is refused, so a weights file cannot run code (which
`torch.load` without `weights_only` would allow).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
  """Stands for a `torch.<X>Storage` class in the pickle."""

  def __init__(self, name: str):
    if name not in _STORAGE_DTYPES:
      raise ValueError(f"unsupported tensor storage torch.{name} (supported: "
                       f"{', '.join(sorted(_STORAGE_DTYPES))})")
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
  """A flat array that tensors view; filled lazily for the legacy format."""

  def __init__(self, dtype: np.dtype, numel: int):
    self.dtype, self.numel = dtype, numel
    self.data: np.ndarray | None = None


class _LazyTensor:
  """A tensor whose storage bytes arrive after the object pickle (legacy)."""

  def __init__(self, storage: _Storage, offset: int, size, stride):
    self.storage, self.offset = storage, int(offset)
    self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

  def materialize(self) -> np.ndarray:
    flat = self.storage.data
    if flat is None:
      raise ValueError("a tensor's storage was never written in the file (truncated?)")
    if not self.size:
      return np.array(flat[self.offset])
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if min(self.size) > 0 and last >= flat.size:
      raise ValueError(f"tensor of shape {self.size} runs past its storage "
                       f"({flat.size} elements): the file is corrupt")
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=self.size, strides=[s * item for s in self.stride])
    return np.array(view, order="C")  # Own, C-contiguous copy.


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused):
  return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
  return data


class _Unpickler(pickle.Unpickler):
  _ALLOWED = {
      ("collections", "OrderedDict"): collections.OrderedDict,
      ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
      ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  }

  def __init__(self, f, storages: dict, load_storage):
    super().__init__(f)
    self._storages, self._load_storage = storages, load_storage

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return self._ALLOWED[(module, name)]
    if module == "torch" and name.endswith("Storage"):
      return _StorageType(name)
    raise pickle.UnpicklingError(
        f"refusing to load {module}.{name} from a weights file: only state dicts of "
        "tensors are read (save with torch.save(model.state_dict(), path))")

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
    if len(pid) > 5 and pid[5] is not None:
      raise pickle.UnpicklingError("storage views (pre-1.0 PyTorch files) are not supported")
    if key not in self._storages:
      storage = _Storage(storage_type.dtype, numel)
      self._load_storage(key, storage)
      self._storages[key] = storage
    return self._storages[key]


def _materialize(obj):
  if isinstance(obj, _LazyTensor):
    return obj.materialize()
  if isinstance(obj, dict):
    return collections.OrderedDict((k, _materialize(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v) for v in obj)
  return obj


def _load_zip(path: str):
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pkl:
      raise ValueError(f"{path}: a zip file without data.pkl is not a PyTorch checkpoint")
    root = pkl[0][: -len("data.pkl")]
    order = "little"
    if f"{root}byteorder" in names:
      order = zf.read(f"{root}byteorder").decode().strip()
    dt = "<" if order == "little" else ">"

    def load_storage(key, storage):
      raw = zf.read(f"{root}data/{key}")
      storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder(dt),
                                   count=storage.numel).astype(storage.dtype)

    obj = _Unpickler(io.BytesIO(zf.read(pkl[0])), {}, load_storage).load()
  return _materialize(obj)


def _load_legacy(path: str):
  with open(path, "rb") as f:
    try:
      magic = pickle.load(f)
    except Exception as e:
      raise ValueError(f"{path}: not a PyTorch checkpoint ({e})") from None
    if magic != _LEGACY_MAGIC:
      raise ValueError(f"{path}: not a PyTorch checkpoint (bad magic number)")
    if pickle.load(f) != _LEGACY_PROTOCOL:
      raise ValueError(f"{path}: unsupported legacy PyTorch protocol version")
    sys_info = pickle.load(f)
    if not sys_info.get("little_endian", True):
      raise ValueError(f"{path}: big-endian legacy checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    obj = _Unpickler(f, storages, lambda key, storage: None).load()
    keys = pickle.load(f)
    for key in keys:
      storage = storages[str(key)]
      (numel,) = struct.unpack("<q", f.read(8))
      raw = f.read(numel * storage.dtype.itemsize)
      if len(raw) != numel * storage.dtype.itemsize:
        raise ValueError(f"{path}: truncated (storage {key} is incomplete)")
      storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<")).astype(
          storage.dtype)
  return _materialize(obj)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a PyTorch state-dict file (either format) or an .npz of arrays.

  Args:
    path: a `.pth`/`.pt` file written by `torch.save(state_dict, path)`, or an
      `.npz` whose array names are the state-dict keys.

  Returns:
    {key: array} in file order; tensors come back as C-contiguous numpy copies
    with their PyTorch shapes (OIHW for convolutions). A dict nested under a
    'state_dict' key is unwrapped, and a 'module.' prefix (DataParallel) is
    dropped.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not a PyTorch checkpoint or holds anything other
      than tensors in (nested) dicts.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"weights file {path} does not exist")
  if path.endswith(".npz"):
    with np.load(path) as z:
      return collections.OrderedDict((k, z[k]) for k in z.files)
  try:
    obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
  except pickle.UnpicklingError as e:
    raise ValueError(f"{path}: {e}") from None
  if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
    obj = obj["state_dict"]
  if not isinstance(obj, dict):
    raise ValueError(f"{path}: holds a {type(obj).__name__}, expected a state dict")
  out = collections.OrderedDict()
  for k, v in obj.items():
    if not isinstance(v, np.ndarray):
      continue  # e.g. `num_batches_tracked` is a tensor too; plain metadata is not.
    out[k[len("module."):] if k.startswith("module.") else k] = v
  return out
