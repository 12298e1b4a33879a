"""Small file helpers shared by every package: atomic writes, file hashes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from typing import Any

import numpy as np


def atomic_write_bytes(path: str, content: bytes) -> None:
  """Writes `content` to `path` through a temporary file and a rename.

  A reader (or a run killed mid-write) sees either the old file or the new
  one, never a partial file.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
  try:
    # mkstemp creates 0600 files; give the result the usual umask permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    with os.fdopen(fd, "wb") as f:
      f.write(content)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_json(path: str, obj: Any) -> None:
  atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_write_npz(path: str, compressed: bool = False, **arrays: Any) -> None:
  """Atomically writes `arrays` as an .npz file (np.savez[_compressed])."""
  buf = io.BytesIO()
  (np.savez_compressed if compressed else np.savez)(buf, **arrays)
  atomic_write_bytes(path, buf.getvalue())


def sha256_file(path: str) -> str:
  """Hex sha256 of a file, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()
