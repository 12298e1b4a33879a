"""The discriminator bank: K discriminator states on disk, cached in memory.

Each discriminator's state (params, Adam state, spectral-norm vectors) lives
in its own file `disc_<k>.v<step>.npz`, written atomically. Stage 1 writes
version 0; stage 2 keeps modified discriminators in an in-memory cache and
writes them at checkpoints (version = checkpoint step) or when the cache must
evict them (version = current step). On resume from checkpoint T every version
newer than T is discarded, so the bank is exactly as it was at T: the run
continues as if it had never stopped. The bank never has to fit in memory
(K = 1000 is about 13 GB in float32); only `cache_bytes` of it is held.

File traffic runs beside the training: writes go to one background thread
(write-behind; a discriminator being written is served from memory until its
file exists), and `prefetch(k)` loads the next step's discriminator on
another. Saving one 13 MB discriminator takes ~45 ms with its fsync on this
machine, against ~9 ms for a whole GS-WGAN iteration on an H100; there,
with a quarter of the bank cached, synchronous files cost 47.8 ms per step
and write-behind + prefetch 39.8 ms (bench.gswgan_step's bank rows). `flush` and `rollback` first wait for
every write in flight, so what a checkpoint refers to is on disk when the
checkpoint is written; a write error is raised in the training thread at the
next bank call.

The cache holds states where the training step left them (on an accelerator:
in its memory, so `cache_bytes` is device memory): on an H100 the 13 MB
host -> device -> host round trip of a host-side cache cost ~22 ms per step,
more than twice the 9 ms step itself. With the cache on the device (an H200,
same benchmark): 16.9 ms per step all cached against 12.7 ms with no bank;
with a quarter cached, 57.9 ms synchronous and 22.4 ms with write-behind +
prefetch.
"""

from __future__ import annotations

import collections
import concurrent.futures
import glob
import os
import re
from typing import Any

import jax
import numpy as np

from jaxtiny.train import checkpoint

_NAME = re.compile(r"disc_(\d+)\.v(\d+)\.npz$")


def _nbytes(tree: Any) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree))


class DiscriminatorBank:
  """Versioned on-disk store of discriminator states with an LRU cache.

  Args:
    directory: where the files live (created if missing).
    template: a discriminator state with the right structure (for loading).
    cache_bytes: how much of the bank to keep in memory, on the device that
      computes with it (writes in flight hold up to `max_pending` more states).
    max_pending: writes allowed in flight before a new one waits.
  """

  def __init__(self, directory: str, template: Any, cache_bytes: int = 2 << 30,
               max_pending: int = 64):
    self.directory = directory
    os.makedirs(directory, exist_ok=True)
    self.template = jax.tree.map(np.asarray, jax.device_get(template))
    self.cache_bytes = cache_bytes
    self.max_pending = max_pending
    self._versions: dict[int, list[int]] = collections.defaultdict(list)
    for path in glob.glob(os.path.join(directory, "disc_*.npz")):
      m = _NAME.search(path)
      if m:
        self._versions[int(m.group(1))].append(int(m.group(2)))
    for v in self._versions.values():
      v.sort()
    self._cache: collections.OrderedDict[int, Any] = collections.OrderedDict()
    self._dirty: set[int] = set()
    self._touched: set[int] = set()
    self._cached_bytes = 0
    self.current_step = 0
    # One writer keeps the writes of one discriminator in order; the reader
    # only loads versions that are already on disk.
    self._writer = concurrent.futures.ThreadPoolExecutor(1, "bank-write")
    self._reader = concurrent.futures.ThreadPoolExecutor(1, "bank-read")
    self._pending: dict[int, tuple[concurrent.futures.Future, Any]] = {}
    self._writes: collections.deque[concurrent.futures.Future] = collections.deque()
    self._prefetched: dict[int, concurrent.futures.Future] = {}

  def _path(self, k: int, version: int) -> str:
    return os.path.join(self.directory, f"disc_{k:05d}.v{version:08d}.npz")

  def has(self, k: int) -> bool:
    return k in self._cache or bool(self._versions.get(k))

  def write_initial(self, k: int, state: Any) -> None:
    """Stores the stage-1 (version 0) state of discriminator k on disk (in
    the background; `wait` for it)."""
    self._write(k, state, 0)

  def get(self, k: int) -> Any:
    """The current state of discriminator k (a pytree of arrays: as put, or
    loaded onto the default device)."""
    self._reap()
    if k in self._cache:
      self._cache.move_to_end(k)
      return self._cache[k]
    if k in self._pending:  # Evicted, its file not written yet.
      state = self._pending[k][1]
    elif k in self._prefetched:
      state = self._prefetched.pop(k).result()
    elif not self._versions.get(k):
      raise KeyError(f"discriminator {k} is not in the bank at {self.directory}; "
                     "stage 1 (warm-start) has not produced it.")
    else:
      state = self._load(self._path(k, self._versions[k][-1]))
    self._insert(k, state)
    return state

  def prefetch(self, k: int) -> None:
    """Starts loading discriminator k from disk if `get(k)` would have to."""
    if (k in self._cache or k in self._pending or k in self._prefetched
        or not self._versions.get(k)):
      return
    self._prefetched[k] = self._reader.submit(
        self._load, self._path(k, self._versions[k][-1]))

  def _load(self, path: str) -> Any:
    return jax.device_put(checkpoint.load_tree(path, self.template)[0])

  def put(self, k: int, state: Any) -> None:
    """Replaces discriminator k's state (kept where it is -- device or host
    memory -- until flushed or evicted; not to be modified in place)."""
    if k in self._cache:
      self._cached_bytes -= _nbytes(self._cache.pop(k))
    self._insert(k, state)
    self._dirty.add(k)

  def _insert(self, k: int, state: Any) -> None:
    self._prefetched.pop(k, None)  # A load started earlier would be stale now.
    self._cache[k] = state
    self._cached_bytes += _nbytes(state)
    while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
      old, old_state = self._cache.popitem(last=False)
      self._cached_bytes -= _nbytes(old_state)
      if old in self._dirty:
        self._write(old, old_state, self.current_step)

  def _write(self, k: int, state: Any, version: int) -> None:
    while len(self._writes) >= self.max_pending:
      self._writes[0].result()
      self._reap()
    self._prefetched.pop(k, None)
    future = self._writer.submit(checkpoint.save_tree, self._path(k, version), state)
    self._pending[k] = (future, state)
    self._writes.append(future)
    if version not in self._versions[k]:
      self._versions[k].append(version)
      self._versions[k].sort()
    self._dirty.discard(k)
    self._touched.add(k)

  def _reap(self) -> None:
    """Forgets finished writes; raises the first write error."""
    while self._writes and self._writes[0].done():
      self._writes.popleft().result()
    for k in [k for k, (f, _) in self._pending.items() if f.done()]:
      del self._pending[k]

  def wait(self) -> None:
    """Blocks until every write in flight is on disk."""
    while self._writes:
      self._writes[0].result()
      self._reap()
    self._reap()

  def flush(self, step: int) -> None:
    """Writes every modified discriminator as version `step`, waits for the
    writes, then deletes versions no checkpoint at or after `step` can need."""
    for k in sorted(self._dirty):
      self._write(k, self._cache[k], step)
    self.wait()
    for k in self._touched:
      keep = [v for v in self._versions[k] if v <= step][-1:]
      for v in self._versions[k]:
        if v not in keep and v <= step:
          os.unlink(self._path(k, v))
      self._versions[k] = [v for v in self._versions[k] if v in keep or v > step]
    self._touched.clear()

  def rollback(self, step: int) -> None:
    """Drops every version newer than `step` (resuming from checkpoint `step`)."""
    self.wait()
    for f in self._prefetched.values():
      f.result()
    self._prefetched.clear()
    self._cache.clear()
    self._cached_bytes = 0
    self._dirty.clear()
    for k, versions in self._versions.items():
      for v in [v for v in versions if v > step]:
        os.unlink(self._path(k, v))
      self._versions[k] = [v for v in versions if v <= step]

  def close(self) -> None:
    """Waits for the writes and stops the threads (the bank stays usable for
    nothing after this)."""
    self.wait()
    self._writer.shutdown()
    self._reader.shutdown()
