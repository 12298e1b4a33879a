import jax
import numpy as np
import pytest

from jaxtiny import data
from jaxtiny.train import distributed


def _arrays(n=50):
  return {"x": np.arange(n), "y": np.arange(n) * 10}


def test_same_seed_same_batches_different_seed_different():
  a = [b["x"] for b in data.batches(_arrays(), 8, seed=1, num_steps=12)]
  b = [b["x"] for b in data.batches(_arrays(), 8, seed=1, num_steps=12)]
  c = [b["x"] for b in data.batches(_arrays(), 8, seed=2, num_steps=12)]
  np.testing.assert_array_equal(np.stack(a), np.stack(b))
  assert not np.array_equal(np.stack(a), np.stack(c))


def test_resume_from_step_sees_the_same_batches():
  full = list(data.batches(_arrays(), 8, seed=3, num_steps=20))
  tail = list(data.batches(_arrays(), 8, seed=3, start_step=13, num_steps=20))
  assert len(tail) == 7
  for x, y in zip(full[13:], tail):
    np.testing.assert_array_equal(x["x"], y["x"])
  np.testing.assert_array_equal(full[13]["x"], data.batch_indices(50, 8, 3, 13))


def test_each_epoch_is_a_permutation_without_repeats():
  per_epoch = data.steps_per_epoch(50, 8)
  assert per_epoch == 6
  for epoch in range(3):
    seen = np.concatenate([b["x"] for b in data.batches(
        _arrays(), 8, 0, start_step=epoch * per_epoch, num_steps=(epoch + 1) * per_epoch)])
    assert len(seen) == 48 and len(np.unique(seen)) == 48
  b = next(data.batches(_arrays(), 8, 0))
  np.testing.assert_array_equal(b["y"], b["x"] * 10)


def test_bad_batch_size_and_lengths():
  with pytest.raises(ValueError, match="batch_size=64"):
    data.steps_per_epoch(50, 64)
  with pytest.raises(ValueError, match="different lengths"):
    next(data.batches({"x": np.zeros(4), "y": np.zeros(5)}, 2, 0))


def test_eval_batches_pad_and_mask():
  out = list(data.eval_batches(_arrays(10), 4))
  assert [len(b["x"]) for b in out] == [4, 4, 4]
  np.testing.assert_array_equal(out[-1]["mask"], [1, 1, 0, 0])
  np.testing.assert_array_equal(np.concatenate([b["x"][b["mask"] > 0] for b in out]),
                                np.arange(10))


def test_sharded_batches_match_host_batches():
  mesh = distributed.data_mesh()
  sharding = distributed.batch_sharded(mesh)
  n_dev = mesh.devices.size
  host = list(data.batches(_arrays(), 4 * n_dev, 5, num_steps=3))
  dev = list(data.sharded_batches(_arrays(), 4 * n_dev, 5, sharding, num_steps=3))
  for h, d in zip(host, dev):
    assert isinstance(d["x"], jax.Array) and d["x"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(d["x"]), h["x"])
