"""Inception-v3 FID features (random weights; the real file is the user's)."""

import numpy as np
import jax.numpy as jnp
import pytest

from jaxtiny.eval import inception
from jaxtiny.eval import metrics


def test_avg_pool_excludes_padding():
  x = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
  got = np.asarray(inception.avg_pool_exclude_pad(jnp.asarray(x)))
  want = np.zeros_like(x)
  for i in range(4):
    for j in range(5):
      win = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
      want[:, i, j] = win.mean(axis=(1, 2))
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_layout_matches_the_fid_graph():
  shapes = inception.expected_shapes()
  assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
  assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
  assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
  n_params = sum(int(np.prod(s)) for s in shapes.values())
  # Inception-v3 without fc and aux head: 21.8 M weights incl. BN vectors.
  assert 21.7e6 < n_params < 21.9e6


def test_prepare_names_missing_and_misshapen_keys():
  sd = inception.random_state_dict()
  del sd["Mixed_5b.branch1x1.conv.weight"]
  sd["Conv2d_1a_3x3.bn.weight"] = np.ones(31, np.float32)
  with pytest.raises(ValueError, match=r"missing Mixed_5b.branch1x1.conv.weight.*|"
                                       r".*Conv2d_1a_3x3.bn.weight has shape \(31,\)"):
    inception.prepare(sd)


def test_features_shape_batching_and_fid_behaviour():
  params = inception.prepare(inception.random_state_dict(seed=1))
  rng = np.random.default_rng(0)
  imgs = (rng.uniform(0, 1, (5, 28, 28)) > 0.6).astype(np.float32)
  f = inception.batched_features(params, imgs, batch_size=3)  # Padded last batch.
  assert f.shape == (5, inception.FEATURE_DIM) and np.isfinite(f).all()
  np.testing.assert_allclose(f[3:], np.asarray(inception.features(params, imgs[3:])),
                             rtol=1e-4, atol=1e-6)
  # Channel-last 1-channel and 2-D inputs agree; features depend on the image.
  np.testing.assert_allclose(np.asarray(inception.features(params, imgs[:2, :, :, None])),
                             f[:2], rtol=1e-4, atol=1e-6)
  assert np.abs(f[0] - f[1]).max() > 1e-3


def _mnist_data_dir(tmp_path):
  from helpers import require_prepared
  from jaxtiny import data
  import os
  require_prepared("mnist")
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  os.symlink(os.path.join(data.data_dir(), "mnist"), data_dir / "mnist")
  return str(data_dir)


def test_inception_fid_separates_noise_from_digits_and_caches(tmp_path):
  from jaxtiny import data
  from jaxtiny.eval import generated
  from jaxtiny.eval import scores
  data_dir = _mnist_data_dir(tmp_path)
  weights = str(tmp_path / "w.npz")
  np.savez(weights, **inception.random_state_dict(seed=2))
  x, y = data.load("mnist", "test", data_dir)
  real = generated.GeneratedSet(x=x[:24].astype(np.float32) / 255.0, y=y[:24], path="real",
                                run={})
  noise = generated.GeneratedSet(
      x=np.random.default_rng(0).uniform(0, 1, (24, 28, 28)).astype(np.float32),
      y=y[:24], path="noise", run={})
  got = {}
  for s in (real, noise):
    got[s.path] = scores.inception_fid(s, "mnist", weights, str(tmp_path), data_dir,
                                       fid_samples=24, reference_samples=24, log=lambda m: 0)
  assert got["real"]["fid_inception_reference_samples"] == 24
  assert got["noise"]["fid_inception"] > 3 * got["real"]["fid_inception"]
  cache = tmp_path / "data" / "eval"
  assert len(list(cache.glob("mnist_inception_*_24.npz"))) == 1
  assert not list(cache.glob("*.partial.npz")) and not list(tmp_path.glob("*.partial.npz"))
  with pytest.raises(ValueError, match=r"FID \(Inception-v3\) needs 30 samples"):
    scores.inception_fid(real, "mnist", weights, str(tmp_path), data_dir, fid_samples=30)


def test_interrupted_feature_pass_resumes(tmp_path, monkeypatch):
  from jaxtiny.eval import scores
  params = inception.prepare(inception.random_state_dict(seed=3))
  imgs = np.random.default_rng(1).uniform(0, 1, (10, 28, 28)).astype(np.float32)
  partial = str(tmp_path / "p.partial.npz")
  monkeypatch.setattr(scores, "INCEPTION_SAVE_EVERY", 4)
  monkeypatch.setattr(scores, "INCEPTION_BATCH", 2)
  full = scores._resumable_inception_features(params, imgs, str(tmp_path / "x.npz"), "t")
  real_fn, calls = inception.batched_features, []

  def dying(*a, **k):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return real_fn(*a, **k)

  monkeypatch.setattr(inception, "batched_features", dying)
  with pytest.raises(KeyboardInterrupt):
    scores._resumable_inception_features(params, imgs, partial, "t")
  with np.load(partial) as f:
    assert int(f["done"]) == 4
  monkeypatch.setattr(inception, "batched_features", real_fn)
  resumed = scores._resumable_inception_features(params, imgs, partial, "t")
  np.testing.assert_allclose(resumed, full, rtol=1e-5, atol=1e-7)
