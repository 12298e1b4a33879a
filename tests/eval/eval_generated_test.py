"""Reading generated sets: GS-WGAN workdirs, plain npz files, bad input."""

import json

import numpy as np
import pytest

from jaxtiny.eval import generated


def _write(path, **arrays):
  np.savez(path, **arrays)
  return str(path)


def test_reads_workdir_with_ledger_and_plain_npz(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.random((20, 28, 28)).astype(np.float32)
  y = np.arange(20) % 10
  _write(tmp_path / "gen_data.npz", x=x, y=y)
  (tmp_path / "privacy.json").write_text(json.dumps(
      {"accountant": "strict", "epsilon": 12.5, "steps": 100, "discriminators": 10}))
  (tmp_path / "config.json").write_text(json.dumps({"generator": "dcgan", "dataset": "mnist"}))
  g = generated.load_generated(str(tmp_path))
  assert g.x.shape == (20, 28, 28, 1) and g.x.dtype == np.float32
  np.testing.assert_array_equal(g.x[..., 0], x)
  assert g.epsilon == 12.5 and g.accountant == "strict"
  assert g.run == {"steps": 100, "discriminators": 10, "generator": "dcgan", "dataset": "mnist"}
  plain = generated.load_generated(str(tmp_path / "gen_data.npz"))
  assert plain.epsilon is None and plain.run == {}
  # A non-private run's ledger says "inf".
  (tmp_path / "privacy.json").write_text(json.dumps({"accountant": "strict", "epsilon": "inf"}))
  assert generated.load_generated(str(tmp_path)).epsilon == float("inf")


def test_reads_a_federated_method_directory(tmp_path):
  # experiments.gswgan_federated: <workdir>/config.json, <workdir>/<method>/{gen_data.npz,
  # privacy.json}; the user-level ledger names users and rounds instead of K and T.
  method = tmp_path / "gswgan"
  method.mkdir()
  _write(method / "gen_data.npz", x=np.zeros((10, 28, 28), np.float32), y=np.arange(10))
  (method / "privacy.json").write_text(json.dumps(
      {"accountant": "user_level", "epsilon": 236.4, "users": 20, "rounds": 1000,
       "sampling_probability": 0.1, "noise_multiplier": 0.5}))
  (tmp_path / "config.json").write_text(json.dumps({"generator": "dcgan", "dataset": "mnist"}))
  g = generated.load_generated(str(method))
  assert g.epsilon == 236.4 and g.accountant == "user_level"
  assert g.run == {"users": 20, "rounds": 1000, "sampling_probability": 0.1,
                   "noise_multiplier": 0.5, "generator": "dcgan", "dataset": "mnist"}


@pytest.mark.parametrize("arrays, message", [
    (dict(images=np.zeros((4, 28, 28)), labels=np.zeros(4, int)), "not 'x' and 'y'"),
    (dict(x=np.zeros((4, 32, 32, 1)), y=np.zeros(4, int)), r"'x' has shape \(4, 32, 32, 1\)"),
    (dict(x=np.zeros((4, 28, 28)), y=np.zeros(3, int)), "'y' has shape"),
    (dict(x=np.zeros((4, 28, 28)), y=np.zeros(4)), "not integer labels"),
    (dict(x=np.full((4, 28, 28), 255, np.uint8), y=np.zeros(4, int)), "divide by 255"),
    (dict(x=np.full((4, 28, 28), 1.5), y=np.zeros(4, int)), r"outside \[0, 1\]"),
    (dict(x=np.full((4, 28, 28), np.nan), y=np.zeros(4, int)), r"outside \[0, 1\]"),
    (dict(x=np.zeros((4, 28, 28)), y=np.array([0, 1, 2, 10])), "labels range"),
])
def test_bad_files_say_what_is_wrong(tmp_path, arrays, message):
  path = _write(tmp_path / "bad.npz", **arrays)
  with pytest.raises(ValueError, match=message) as e:
    generated.load_generated(path)
  assert "Expected an .npz with 'x'" in str(e.value)


def test_missing_inputs_and_too_few_samples(tmp_path):
  with pytest.raises(FileNotFoundError, match="has no gen_data.npz"):
    generated.load_generated(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    generated.load_generated(str(tmp_path / "nope.npz"))
  (tmp_path / "junk.npz").write_bytes(b"not a zip file")
  with pytest.raises(ValueError, match="cannot be read"):
    generated.load_generated(str(tmp_path / "junk.npz"))
  g = generated.load_generated(_write(tmp_path / "ok.npz", x=np.zeros((5, 28, 28)),
                                      y=np.zeros(5, int)))
  with pytest.raises(ValueError, match="Inception Score needs 60000 samples, the file has 5"):
    generated.require_samples(g, 60000, "Inception Score")


def test_pixel_floor_zeroes_faint_pixels_only(tmp_path):
  x = np.array([0.0, 1e-4, 0.0499, 0.05, 0.3, 1.0], np.float32).reshape(1, 1, 6, 1)
  x = np.pad(x, ((0, 1), (0, 27), (0, 22), (0, 0)), constant_values=0.02)
  g = generated.GeneratedSet(x=x, y=np.array([3, 4], np.int32), path="g.npz",
                             run={"rounds": 10})
  f = generated.with_pixel_floor(g, 0.05)
  np.testing.assert_array_equal(f.x[0, 0, :6, 0], np.float32([0, 0, 0, 0.05, 0.3, 1.0]))
  assert f.x.dtype == np.float32 and np.count_nonzero(f.x) == 3
  assert f.run == {"rounds": 10, "pixel_floor": 0.05}
  assert f.y is g.y and f.path == g.path
  assert np.count_nonzero(g.x == 0.02) > 0 and g.run == {"rounds": 10}  # Input untouched.
  for bad in (0, 0.0, -0.1, 1.0, 2, float("nan"), "0.05", None):
    with pytest.raises(ValueError, match=r"pixel floor must be a number in \(0, 1\)"):
      generated.with_pixel_floor(g, bad)
