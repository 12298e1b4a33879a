"""Deterministic batch iterators, single- and multi-device.

Batches are a pure function of (seed, step): the epoch's permutation comes from
`np.random.default_rng([seed, epoch])`, so a resumed run sees exactly the
batches an uninterrupted one would, without any iterator state to checkpoint.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Optional

import jax
import numpy as np


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch (the remainder of each permutation is dropped)."""
  if batch_size <= 0 or batch_size > num_examples:
    raise ValueError(f"batch_size={batch_size} must be in [1, {num_examples}] "
                     "(the number of training examples).")
  return num_examples // batch_size


def batch_indices(num_examples: int, batch_size: int, seed: int,
                  step: int) -> np.ndarray:
  """Indices of the examples in global batch `step` (int64 [batch_size])."""
  per_epoch = steps_per_epoch(num_examples, batch_size)
  epoch, i = divmod(step, per_epoch)
  perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
  return perm[i * batch_size:(i + 1) * batch_size]


def batches(arrays: Mapping[str, np.ndarray], batch_size: int, seed: int,
            start_step: int = 0,
            num_steps: Optional[int] = None) -> Iterator[dict[str, np.ndarray]]:
  """Yields shuffled batches `{k: arrays[k][idx]}` from `start_step` on.

  Args:
    arrays: equally long arrays (e.g. {"image": ..., "label": ...}).
    batch_size: examples per batch.
    seed: shuffling seed; the order is a pure function of (seed, step).
    start_step: first global step to yield (for resuming).
    num_steps: stop before this global step (None: never stop).
  """
  n = _common_length(arrays)
  step = start_step
  cached_epoch, perm = None, None
  per_epoch = steps_per_epoch(n, batch_size)
  while num_steps is None or step < num_steps:
    epoch, i = divmod(step, per_epoch)
    if epoch != cached_epoch:
      perm = np.random.default_rng([seed, epoch]).permutation(n)
      cached_epoch = epoch
    sel = perm[i * batch_size:(i + 1) * batch_size]
    yield {k: v[sel] for k, v in arrays.items()}
    step += 1


def sharded_batches(arrays: Mapping[str, np.ndarray], global_batch_size: int,
                    seed: int, sharding: jax.sharding.Sharding,
                    start_step: int = 0, num_steps: Optional[int] = None
                    ) -> Iterator[dict[str, jax.Array]]:
  """Like `batches`, but yields global `jax.Array`s laid out by `sharding`.

  Every process computes the same global permutation and feeds only its own
  contiguous slice of each global batch, so multi-host runs see the same
  global batches as a single-host run.
  """
  nproc, pid = jax.process_count(), jax.process_index()
  if global_batch_size % nproc:
    raise ValueError(f"global batch {global_batch_size} is not divisible by "
                     f"the {nproc} processes.")
  local = global_batch_size // nproc
  for batch in batches(arrays, global_batch_size, seed, start_step, num_steps):
    yield {
        k: jax.make_array_from_process_local_data(
            sharding, v[pid * local:(pid + 1) * local], (global_batch_size,) + v.shape[1:])
        for k, v in batch.items()
    }


def eval_batches(arrays: Mapping[str, np.ndarray], batch_size: int
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Yields the data in order in fixed-size batches, zero-padded at the end.

  Each batch has a float32 "mask" (1 for real examples) so that one compiled
  evaluation step serves every batch.
  """
  n = _common_length(arrays)
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    pad = batch_size - (stop - start)
    out = {}
    for k, v in arrays.items():
      chunk = v[start:stop]
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad,) + v.shape[1:], v.dtype)])
      out[k] = chunk
    out["mask"] = np.concatenate([np.ones(stop - start, np.float32),
                                  np.zeros(pad, np.float32)])
    yield out


def _common_length(arrays: Mapping[str, np.ndarray]) -> int:
  lengths = {k: len(v) for k, v in arrays.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"arrays have different lengths: {lengths}")
  return next(iter(lengths.values()))
