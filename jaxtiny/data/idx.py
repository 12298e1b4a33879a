"""Reading and writing the IDX format used by MNIST-style datasets.

An IDX file is a big-endian header (two zero bytes, a type code, the number of
dimensions, then one uint32 per dimension) followed by the raw array. Files may
be gzip-compressed; `read_idx` detects that from the magic bytes, not the name.
"""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np

from jaxtiny.fileio import atomic_write_bytes

_TYPE_CODES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES_BY_KIND = {np.dtype(v).str.lstrip("<>|="): k for k, v in _TYPE_CODES.items()}


class IdxFormatError(ValueError):
  """Raised when a file is not a well-formed IDX file."""


def read_bytes(path: str) -> bytes:
  """Returns the (decompressed) content of `path`, gzipped or not."""
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == b"\x1f\x8b":
    try:
      return gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise IdxFormatError(
          f"{path}: gzip stream is corrupt or truncated ({e}). Delete the file "
          "and prepare the dataset again.") from e
  return raw


def parse_idx(content: bytes, name: str = "<bytes>") -> np.ndarray:
  """Parses IDX `content` into a numpy array (native byte order).

  Args:
    content: the decompressed bytes of an IDX file.
    name: used in error messages.

  Returns:
    The array with the shape stored in the header.

  Raises:
    IdxFormatError: on a bad magic number or a size that does not match the
      header (a truncated or padded file).
  """
  if len(content) < 4 or content[0] != 0 or content[1] != 0:
    raise IdxFormatError(f"{name}: not an IDX file (bad magic number).")
  code, ndim = content[2], content[3]
  if code not in _TYPE_CODES:
    raise IdxFormatError(f"{name}: unknown IDX type code 0x{code:02x}.")
  header = 4 + 4 * ndim
  if len(content) < header:
    raise IdxFormatError(f"{name}: truncated IDX header.")
  shape = struct.unpack(">" + "I" * ndim, content[4:header])
  dtype = _TYPE_CODES[code]
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(content) - header != expected:
    raise IdxFormatError(
        f"{name}: header says shape {tuple(shape)} ({expected} bytes of data) "
        f"but the file holds {len(content) - header} bytes; it is truncated or "
        "corrupt. Delete it and prepare the dataset again.")
  arr = np.frombuffer(content, dtype=dtype, offset=header).reshape(shape)
  return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (gzipped or not) into a numpy array."""
  return parse_idx(read_bytes(path), name=path)


def encode_idx(array: np.ndarray) -> bytes:
  """Returns the IDX encoding of `array` (uncompressed)."""
  array = np.asarray(array)
  kind = array.dtype.str.lstrip("<>|=")
  if kind not in _CODES_BY_KIND:
    raise ValueError(f"dtype {array.dtype} has no IDX type code.")
  code = _CODES_BY_KIND[kind]
  header = bytes([0, 0, code, array.ndim]) + struct.pack(
      ">" + "I" * array.ndim, *array.shape)
  return header + array.astype(_TYPE_CODES[code], copy=False).tobytes()


def write_idx(path: str, array: np.ndarray, compress: bool = False) -> None:
  """Atomically writes `array` to `path` as IDX (gzipped if `compress`)."""
  content = encode_idx(array)
  if compress:
    content = gzip.compress(content, mtime=0)
  atomic_write_bytes(path, content)


def md5(content: bytes) -> str:
  return hashlib.md5(content).hexdigest()
