import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtiny.train import checkpoint
from jaxtiny.train import state as state_lib


def _state(seed=0):
  params = {"dense": {"w": jax.random.normal(jax.random.key(seed), (3, 4)),
                      "b": jnp.zeros(4)}, "scale": jnp.ones(())}
  tx = optax.adam(1e-3)
  state = state_lib.create_train_state(params, tx, model_state={"u": jnp.arange(3.0)})
  grads = jax.tree.map(jnp.ones_like, params)
  return state.apply_gradients(tx, grads), tx


def test_roundtrip_state_with_typed_key(tmp_path):
  state, _ = _state()
  tree = {"state": state, "key": jax.random.key(42)}
  checkpoint.save(str(tmp_path), 7, tree, meta={"note": "x"})
  template = {"state": _state(seed=1)[0], "key": jax.random.key(0)}
  restored, meta, step = checkpoint.restore(str(tmp_path), template)
  assert step == 7 and meta == {"note": "x"}
  assert int(restored["state"].step) == 1
  for a, b in zip(jax.tree.leaves(tree["state"]), jax.tree.leaves(restored["state"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(a).dtype == np.asarray(b).dtype
  np.testing.assert_array_equal(jax.random.key_data(restored["key"]),
                                jax.random.key_data(tree["key"]))
  # The restored key draws the same numbers.
  np.testing.assert_array_equal(jax.random.normal(restored["key"], (3,)),
                                jax.random.normal(tree["key"], (3,)))


def test_keeps_only_newest_and_no_temp_files(tmp_path):
  state, _ = _state()
  for step in (10, 20, 30, 40):
    checkpoint.save(str(tmp_path), step, state, keep=2)
  assert checkpoint.list_steps(str(tmp_path)) == [30, 40]
  assert sorted(os.listdir(tmp_path)) == ["ckpt_30.npz", "ckpt_40.npz"]
  _, _, step = checkpoint.restore(str(tmp_path), state, step=30)
  assert step == 30


def test_mismatched_template_is_a_clear_error(tmp_path):
  state, _ = _state()
  checkpoint.save(str(tmp_path), 1, state)
  bigger = state.replace(params={**state.params, "dense": {
      "w": jnp.zeros((3, 5)), "b": jnp.zeros(4)}})
  with pytest.raises(checkpoint.CheckpointError, match="shape"):
    checkpoint.restore(str(tmp_path), bigger)
  extra = state.replace(model_state={"u": jnp.arange(3.0), "v": jnp.zeros(2)})
  with pytest.raises(checkpoint.CheckpointError, match="new --workdir"):
    checkpoint.restore(str(tmp_path), extra)


def test_no_checkpoint(tmp_path):
  assert checkpoint.latest_step(str(tmp_path)) is None
  with pytest.raises(FileNotFoundError):
    checkpoint.restore(str(tmp_path), {"a": jnp.zeros(1)})
