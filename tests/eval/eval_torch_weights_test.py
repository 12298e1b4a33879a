"""The torch-free reader of PyTorch checkpoint files."""

import os
import pickle
import sys
import zipfile

import numpy as np
import pytest

from jaxtiny.eval import torch_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
sys.path.insert(0, FIXTURES)
import make_torch_fixtures  # noqa: E402  (the recipe the fixtures were written from)


@pytest.mark.parametrize("name", ["torch_state_zip.pth", "torch_state_legacy.pth"])
def test_reads_both_torch_save_formats_exactly(name):
  got = torch_weights.load_state_dict(os.path.join(FIXTURES, name))
  want = make_torch_fixtures.expected()
  assert list(got) == list(want)  # File order, 'state_dict' wrapper unwrapped.
  for k, v in want.items():
    assert got[k].dtype == v.dtype, k
    assert got[k].shape == v.shape, k
    np.testing.assert_array_equal(got[k], v, err_msg=k)
  assert got["view"].flags["C_CONTIGUOUS"]


def test_npz_passthrough_and_module_prefix(tmp_path):
  path = str(tmp_path / "w.npz")
  np.savez(path, a=np.ones(3, np.float32))
  assert list(torch_weights.load_state_dict(path)) == ["a"]


def test_refuses_code_in_pickle(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))

  path = str(tmp_path / "evil.pth")
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
  with pytest.raises(ValueError, match="refusing to load"):
    torch_weights.load_state_dict(path)


def test_clear_errors_for_wrong_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    torch_weights.load_state_dict(str(tmp_path / "missing.pth"))
  junk = tmp_path / "junk.pth"
  junk.write_bytes(b"\x00not a checkpoint at all")
  with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
    torch_weights.load_state_dict(str(junk))
  nopkl = tmp_path / "other.zip"
  with zipfile.ZipFile(nopkl, "w") as zf:
    zf.writestr("readme.txt", "hello")
  with pytest.raises(ValueError, match="without data.pkl"):
    torch_weights.load_state_dict(str(nopkl))
  # A legacy file cut short loses storage bytes.
  data = open(os.path.join(FIXTURES, "torch_state_legacy.pth"), "rb").read()
  cut = tmp_path / "cut.pth"
  cut.write_bytes(data[:-40])
  with pytest.raises(ValueError, match="truncated"):
    torch_weights.load_state_dict(str(cut))
