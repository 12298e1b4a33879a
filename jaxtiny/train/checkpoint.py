"""Atomic checkpoints of whole pytrees (train state plus host-side extras).

A checkpoint is one `.npz` file `ckpt_<step>.npz` holding every leaf under its
tree path, plus a JSON blob for host-side metadata. Files are written to a
temporary name and renamed, so a run killed at any moment leaves either the
previous checkpoint or the new one, never half of one. Typed PRNG keys are
stored as their raw key data and re-wrapped on restore.
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Optional

import jax
import numpy as np

from jaxtiny import fileio

_PATTERN = re.compile(r"ckpt_(\d+)\.npz$")
_META = "__meta__"


class CheckpointError(RuntimeError):
  """A checkpoint does not match the state it is restored into."""


def _leaves(tree: Any) -> list[tuple[str, Any]]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def _is_key(x: Any) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)


def save_tree(path: str, tree: Any, meta: Optional[dict] = None) -> None:
  """Atomically writes every leaf of `tree` (and `meta` as JSON) to `path`.

  Sharded arrays are gathered to the host; only process 0 writes.
  """
  arrays = {}
  for name, leaf in _leaves(tree):
    if _is_key(leaf):
      name, leaf = "key:" + name, jax.random.key_data(leaf)
    arrays[name] = np.asarray(jax.device_get(leaf))
  arrays[_META] = np.frombuffer(json.dumps(meta or {}).encode(), np.uint8)
  if jax.process_index() == 0:
    fileio.atomic_write_npz(path, **arrays)


def read_meta(path: str) -> dict:
  """Returns the JSON metadata stored in a file written by `save_tree`."""
  with np.load(path) as data:
    return json.loads(data[_META].tobytes().decode())


def save(directory: str, step: int, tree: Any, meta: Optional[dict] = None,
         keep: int = 2) -> str:
  """Atomically saves `tree` as checkpoint `step` and prunes old ones.

  Args:
    directory: checkpoint directory (created if missing).
    step: the step number in the file name.
    tree: any pytree of arrays (sharded arrays are gathered to the host).
    meta: JSON-serialisable host-side data saved alongside.
    keep: how many of the newest checkpoints to keep.

  Returns:
    The path written.
  """
  path = os.path.join(directory, f"ckpt_{step}.npz")
  save_tree(path, tree, meta)
  if jax.process_index() == 0:
    for old in list_steps(directory)[:-keep]:
      os.unlink(os.path.join(directory, f"ckpt_{old}.npz"))
  return path


def list_steps(directory: str) -> list[int]:
  """Steps of the complete checkpoints in `directory`, ascending."""
  steps = []
  for path in glob.glob(os.path.join(directory, "ckpt_*.npz")):
    m = _PATTERN.search(path)
    if m:
      steps.append(int(m.group(1)))
  return sorted(steps)


def latest_step(directory: str) -> Optional[int]:
  steps = list_steps(directory)
  return steps[-1] if steps else None


def restore(directory: str, template: Any, step: Optional[int] = None
            ) -> tuple[Any, dict, int]:
  """Restores a checkpoint into the structure of `template`.

  Args:
    directory: checkpoint directory.
    template: a pytree with the structure, dtypes and shardings to restore
      into (e.g. a freshly initialised state).
    step: which checkpoint; the latest by default.

  Returns:
    (tree, meta, step).

  Raises:
    FileNotFoundError: no checkpoint exists.
    CheckpointError: the checkpoint's leaves do not match `template` (e.g. the
      config changed the model); the message names the mismatch.
  """
  step = latest_step(directory) if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {directory}")
  tree, meta = load_tree(os.path.join(directory, f"ckpt_{step}.npz"), template)
  return tree, meta, step


def load_tree(path: str, template: Any) -> tuple[Any, dict]:
  """Loads a file written by `save_tree` into the structure of `template`.

  Returns:
    (tree, meta).

  Raises:
    CheckpointError: the stored leaves do not match `template`.
  """
  hint = "Use a new --workdir or delete the checkpoints."
  with np.load(path) as data:
    stored = {k: data[k] for k in data.files}
  meta = json.loads(stored.pop(_META).tobytes().decode())
  flat, treedef = jax.tree_util.tree_flatten_with_path(template)
  leaves = []
  for path_, leaf in flat:
    name = jax.tree_util.keystr(path_)
    is_key = _is_key(leaf)
    stored_name = ("key:" + name) if is_key else name
    if stored_name not in stored:
      raise CheckpointError(
          f"{path} has no entry {stored_name!r}; it was written with a "
          f"different configuration. {hint}")
    value = stored.pop(stored_name)
    want = jax.random.key_data(leaf) if is_key else leaf
    if tuple(value.shape) != tuple(np.shape(want)):
      raise CheckpointError(
          f"{path}: {name} has shape {value.shape}, the current configuration "
          f"expects {np.shape(want)}. {hint}")
    value = value.astype(np.asarray(want).dtype)
    if is_key:
      value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
    elif isinstance(leaf, jax.Array):
      value = jax.device_put(value, leaf.sharding)
    leaves.append(value)
  if stored:
    raise CheckpointError(
        f"{path} has entries the current configuration lacks: "
        f"{sorted(stored)[:5]}. {hint}")
  return jax.tree_util.tree_unflatten(treedef, leaves), meta
