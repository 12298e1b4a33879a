import gzip

import numpy as np
import pytest

from jaxtiny.data import idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_roundtrip(tmp_path, dtype, compress):
  rng = np.random.default_rng(0)
  arr = (rng.normal(size=(7, 3, 5)) * 100).astype(dtype)
  path = str(tmp_path / "x")
  idx.write_idx(path, arr, compress=compress)
  out = idx.read_idx(path)
  assert out.dtype == arr.dtype and out.shape == arr.shape
  np.testing.assert_array_equal(out, arr)
  with open(path, "rb") as f:
    assert (f.read(2) == b"\x1f\x8b") == compress


def test_header_is_big_endian_standard_layout():
  content = idx.encode_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))
  assert content[:4] == bytes([0, 0, 0x08, 2])
  assert content[4:12] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
  assert content[12:] == bytes(range(6))


def test_truncated_file_names_the_file(tmp_path):
  path = tmp_path / "train-images-idx3-ubyte"
  content = idx.encode_idx(np.zeros((4, 28, 28), np.uint8))
  path.write_bytes(content[:-10])
  with pytest.raises(idx.IdxFormatError, match="train-images-idx3-ubyte.*truncated"):
    idx.read_idx(str(path))


def test_truncated_gzip_names_the_file(tmp_path):
  path = tmp_path / "labels.gz"
  path.write_bytes(gzip.compress(idx.encode_idx(np.zeros(1000, np.uint8)))[:-20])
  with pytest.raises(idx.IdxFormatError, match="labels.gz"):
    idx.read_idx(str(path))


def test_bad_magic(tmp_path):
  path = tmp_path / "junk"
  path.write_bytes(b"PK\x03\x04 not idx")
  with pytest.raises(idx.IdxFormatError, match="not an IDX file"):
    idx.read_idx(str(path))
