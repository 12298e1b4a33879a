"""Loading and validating a generated labelled dataset for evaluation.

Accepts a GS-WGAN workdir (reads `gen_data.npz`, and the run's privacy ledger
and config for epsilon and scale) or any `.npz` with `x` [N, 28, 28] or
[N, 28, 28, 1] in [0, 1] and integer labels `y` [N].
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

IMAGE_SHAPE = (28, 28, 1)


@dataclasses.dataclass(frozen=True)
class GeneratedSet:
  x: np.ndarray                  # float32 [N, 28, 28, 1] in [0, 1]
  y: np.ndarray                  # int32 [N]
  path: str                      # the .npz that was read
  epsilon: float | None = None   # from the run's privacy ledger, if any
  accountant: str | None = None
  run: dict[str, Any] = dataclasses.field(default_factory=dict)  # run scale


def _bad(path: str, what: str) -> ValueError:
  return ValueError(f"{path}: {what}. Expected an .npz with 'x' [N, 28, 28(, 1)] "
                    "float in [0, 1] and integer labels 'y' [N] (e.g. the "
                    "gen_data.npz a GS-WGAN run writes).")


def _run_info(workdir: str) -> tuple[float | None, str | None, dict[str, Any]]:
  epsilon = accountant = None
  run: dict[str, Any] = {}
  ledger = os.path.join(workdir, "privacy.json")
  if os.path.exists(ledger):
    with open(ledger) as f:
      entry = json.load(f)
    eps = entry.get("epsilon")
    epsilon = float(eps) if eps is not None else None  # "inf" parses to inf.
    accountant = entry.get("accountant")
    for key in ("steps", "discriminators", "batch_size", "noise_multiplier", "delta",
                "users", "rounds", "sampling_probability"):  # The last three: federated.
      if key in entry:
        run[key] = entry[key]
  config = os.path.join(workdir, "config.json")
  if not os.path.exists(config):
    # A federated run keeps one config.json above its per-method directories.
    config = os.path.join(os.path.dirname(os.path.abspath(workdir)), "config.json")
  if os.path.exists(config):
    with open(config) as f:
      cfg = json.load(f)
    for key in ("generator", "dataset"):
      if key in cfg:
        run[key] = cfg[key]
  return epsilon, accountant, run


def load_generated(path: str, num_classes: int = 10) -> GeneratedSet:
  """Reads and validates a generated set; raises ValueError/FileNotFoundError
  with what is wrong and how to fix it."""
  epsilon = accountant = None
  run: dict[str, Any] = {}
  if os.path.isdir(path):
    npz = os.path.join(path, "gen_data.npz")
    if not os.path.exists(npz):
      raise FileNotFoundError(
          f"{path} has no gen_data.npz: the run has not finished (rerun the same "
          "`python -m experiments.gswgan ... --workdir` command to resume it) or "
          "this is not a GS-WGAN workdir; pass an .npz path instead.")
    epsilon, accountant, run = _run_info(path)
  else:
    npz = path
    if not os.path.exists(npz):
      raise FileNotFoundError(f"{npz} does not exist.")
  try:
    with np.load(npz, allow_pickle=False) as f:
      files = set(f.files)
      if not {"x", "y"} <= files:
        raise _bad(npz, f"it has keys {sorted(files)}, not 'x' and 'y'")
      x, y = f["x"], f["y"]
  except (OSError, ValueError) as e:
    if isinstance(e, ValueError) and str(e).startswith(npz):
      raise
    raise _bad(npz, f"cannot be read as .npz ({e})") from e
  if x.ndim == 3:
    x = x[..., None]
  if x.shape[1:] != IMAGE_SHAPE:
    raise _bad(npz, f"'x' has shape {x.shape}")
  if y.shape != (len(x),):
    raise _bad(npz, f"'y' has shape {y.shape} for {len(x)} images")
  if not np.issubdtype(y.dtype, np.integer):
    raise _bad(npz, f"'y' has dtype {y.dtype}, not integer labels")
  if len(x) == 0:
    raise _bad(npz, "it holds no samples")
  if not np.issubdtype(x.dtype, np.floating):
    hint = " (uint8 pixels? divide by 255)" if x.dtype == np.uint8 else ""
    raise _bad(npz, f"'x' has dtype {x.dtype}{hint}")
  lo, hi = float(np.min(x)), float(np.max(x))
  if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
    raise _bad(npz, f"'x' has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]")
  if y.min() < 0 or y.max() >= num_classes:
    raise _bad(npz, f"labels range over [{y.min()}, {y.max()}], not [0, {num_classes})")
  return GeneratedSet(x=x.astype(np.float32), y=y.astype(np.int32), path=npz,
                      epsilon=epsilon, accountant=accountant, run=run)


def with_pixel_floor(gen: GeneratedSet, floor: float) -> GeneratedSet:
  """`gen` with every pixel below `floor` set to 0 (others unchanged).

  A data-independent post-processing of released samples (it cannot change a
  run's privacy guarantee). Real digits store their background as exact zeros;
  a sigmoid generator's background is small but nonzero, and models that read
  single pixels (RandomForest thresholds, GaussianNB variances) can learn
  class-specific patterns in those faint values that real test images never
  show. Evaluating with and without a floor separates that sensitivity from the
  digits themselves. The floor is kept in `run["pixel_floor"]`.
  """
  if not (isinstance(floor, (int, float)) and 0.0 < floor < 1.0):
    raise ValueError(f"pixel floor must be a number in (0, 1) (pixels are in [0, 1]); "
                     f"got {floor!r}. Use e.g. 0.05, or leave it out for the raw samples.")
  x = np.where(gen.x < floor, np.float32(0.0), gen.x).astype(np.float32)
  return dataclasses.replace(gen, x=x, run={**gen.run, "pixel_floor": float(floor)})


def require_samples(gen: GeneratedSet, needed: int, metric: str) -> None:
  """Raises when `gen` has fewer than `needed` samples for `metric`."""
  if len(gen.y) < needed:
    raise ValueError(f"{gen.path}: {metric} needs {needed} samples, the file has "
                     f"{len(gen.y)}. Generate more (GS-WGAN: "
                     f"--config.num_gen_samples={needed}) or use --fast.")
