"""Metric logging: JSON lines in the workdir and a live progress line."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Mapping, Optional, TextIO

import jax
import numpy as np


def _to_python(value: Any) -> Any:
  value = jax.device_get(value)
  if isinstance(value, (np.ndarray, np.generic)):
    value = value.tolist()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricWriter:
  """Appends `{"step": s, **metrics}` records to `<workdir>/metrics.jsonl`.

  On resume, records past the restored step (written by the interrupted run
  after its last checkpoint) are dropped first, so the file reads as if the run
  had never stopped.
  """

  def __init__(self, workdir: str, filename: str = "metrics.jsonl",
               resume_step: Optional[int] = None):
    self.path = os.path.join(workdir, filename)
    self._enabled = jax.process_index() == 0
    if not self._enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    if os.path.exists(self.path):
      keep = read_metrics(self.path)
      if resume_step is not None:
        keep = [r for r in keep if r.get("step", 0) <= resume_step]
      else:
        keep = []
      tmp = self.path + ".tmp"
      with open(tmp, "w") as f:
        for r in keep:
          f.write(json.dumps(r) + "\n")
      os.replace(tmp, self.path)

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self._enabled:
      return
    record = {"step": int(step), **{k: _to_python(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


def read_metrics(path: str) -> list[dict]:
  """Reads a JSON-lines metric file, ignoring a torn last line."""
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return records


def _fmt_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
  """A live progress line: step, steps/s, ETA and a few metrics.

  On a terminal the line is redrawn in place; otherwise (CI logs, files) a
  new line is printed at most every `interval` seconds.
  """

  def __init__(self, total_steps: int, start_step: int = 0, desc: str = "",
               interval: float = 10.0, stream: Optional[TextIO] = None):
    self.total = total_steps
    self.desc = desc
    self.stream = stream or sys.stderr
    self.tty = self.stream.isatty()
    self.interval = 0.5 if self.tty else interval
    self._start_step = start_step
    self._t0 = time.time()
    self._last = -float("inf")
    self._enabled = jax.process_index() == 0

  def due(self) -> bool:
    """Whether `update` would print now (so callers can skip computing
    metrics that need a device sync when it would not)."""
    return self._enabled and time.time() - self._last >= self.interval

  def update(self, step: int, metrics: Optional[Mapping[str, Any]] = None,
             force: bool = False) -> None:
    now = time.time()
    if not self._enabled or (not force and now - self._last < self.interval):
      return
    self._last = now
    done = step - self._start_step
    rate = done / max(now - self._t0, 1e-9)
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    parts = [f"{self.desc} step {step}/{self.total}",
             f"{rate:.2f} steps/s", f"ETA {_fmt_duration(eta)}"]
    for k, v in (metrics or {}).items():
      v = _to_python(v)
      parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    line = " | ".join(parts)
    if self.tty:
      self.stream.write("\r\x1b[K" + line)
    else:
      self.stream.write(line + "\n")
    self.stream.flush()

  def close(self, step: int, metrics: Optional[Mapping[str, Any]] = None) -> None:
    self.update(step, metrics, force=True)
    if self._enabled and self.tty:
      self.stream.write("\n")
    elapsed = time.time() - self._t0
    if self._enabled:
      self.stream.write(f"{self.desc} done: {step - self._start_step} steps in "
                        f"{_fmt_duration(elapsed)}\n")
      self.stream.flush()
