"""Runs the linear theory toys from a config: all seeds vmapped, every method,
a results.json summary, the traces (npz) and a plot of ||w2|| and target
accuracy against self-training steps with the boundary-density diagnostics.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import ml_collections
import numpy as np

from jaxtiny import fileio
from jaxtiny.selftrain import toy
from jaxtiny.train import metrics as train_metrics
from jaxtiny.train import plots

METHODS = {  # name -> ToySpec overrides.
    "entropy": {"method": "entropy", "em_loss": "entropy"},
    "entropy_exp": {"method": "entropy", "em_loss": "exp"},
    "pseudo_label": {"method": "pseudo_label"},
}


def spec_from_config(config: ml_collections.ConfigDict, method: str) -> toy.ToySpec:
  if method not in METHODS:
    raise ValueError(f"unknown self-training method {method!r}; choose from "
                     f"{sorted(METHODS)}")
  fields = {f.name for f in dataclasses.fields(toy.ToySpec)}
  kw = {k: v for k, v in config.toy.items() if k in fields}
  unknown = set(config.toy.keys()) - fields
  if unknown:
    raise ValueError(f"config.toy has unknown keys {sorted(unknown)}; valid: {sorted(fields)}")
  return toy.ToySpec(**{**kw, **METHODS[method]})


def _stats(a: np.ndarray) -> dict[str, float]:
  return {"mean": float(np.mean(a)), "std": float(np.std(a)),
          "min": float(np.min(a)), "max": float(np.max(a))}


def _trend(start: float, end: float, tol: float = 0.02) -> str:
  if end < start * (1 - tol):
    return "shrinks"
  return "grows" if end > start * (1 + tol) else "flat"


NEUTRAL_BAND = 0.02  # |diagnostic| below this: within estimation noise.


def _predicted(diagnostic: float) -> str:
  if abs(diagnostic) < NEUTRAL_BAND:
    return "neutral"
  return "shrinks" if diagnostic > 0 else "grows"


def summarize(out: dict[str, np.ndarray]) -> dict[str, Any]:
  """Seed statistics of one method's traces."""
  w2 = out["w2_norm"]
  mean_w2 = w2.mean(0)
  # The diagnostics predict the direction at the start of self-training.
  d0, r0 = float(out["diagnostic"][:, 0].mean()), float(out["sphere_diagnostic"][:, 0].mean())
  return {
      "target_acc_start": _stats(out["target_acc"][:, 0]),
      "target_acc_end": _stats(out["target_acc"][:, -1]),
      "w2_norm_start": _stats(w2[:, 0]), "w2_norm_end": _stats(w2[:, -1]),
      "steps_per_halving": toy.halving_steps(out["step"], mean_w2),
      "measured_trend": _trend(float(mean_w2[0]), float(mean_w2[-1])),
      "diagnostic_start": d0, "diagnostic_end": float(out["diagnostic"][:, -1].mean()),
      "sphere_diagnostic_start": r0,
      "sphere_diagnostic_end": float(out["sphere_diagnostic"][:, -1].mean()),
      "predicted_trend_euclidean": _predicted(d0),
      "predicted_trend_sphere": _predicted(r0),
  }


def plot(path: str, traces: dict[str, dict[str, np.ndarray]], title: str) -> None:
  """One row per method: ||w2||, target accuracy (with the Bayes line) and the
  two diagnostics against self-training step; thin lines are seeds."""
  fig, axes = plt.subplots(len(traces), 3, figsize=(15, 3.6 * len(traces)), squeeze=False)
  for row, (name, out) in zip(axes, traces.items()):
    step = out["step"]
    unit = "rounds" if name == "pseudo_label" else "steps"
    for s in range(out["w2_norm"].shape[0]):
      row[0].plot(step, out["w2_norm"][s], color="C0", alpha=0.3, lw=0.8)
      row[1].plot(step, out["target_acc"][s], color="C1", alpha=0.3, lw=0.8)
    row[0].plot(step, out["w2_norm"].mean(0), color="C0", lw=2, label="mean over seeds")
    row[0].set_yscale("log")
    row[0].set_ylabel("||w2|| (spurious weight)")
    row[1].plot(step, out["target_acc"].mean(0), color="C1", lw=2, label="mean")
    row[1].axhline(float(out["bayes_acc"].mean()), color="k", ls="--",
                   label="Bayes direction (c, 0)")
    row[1].set_ylabel("target accuracy")
    row[2].plot(step, out["diagnostic"].mean(0), label="E[e^-|t|] - 2 p_t(0)")
    row[2].plot(step, out["sphere_diagnostic"].mean(0),
                label="E[(1+|t|) e^-|t|] - 2 p_t(0) (sphere)")
    row[2].axhline(0.0, color="k", lw=0.8)
    row[2].set_ylabel("boundary diagnostic (>0: w2 shrinks)")
    for ax in row:
      ax.set_xlabel(f"self-training {unit} ({name})")
      ax.grid(alpha=0.3)
      ax.legend(fontsize=8)
  fig.suptitle(title)
  plots.save_figure(fig, path)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """All methods of one toy variant; writes results.json, traces.npz and
  toy.png into `workdir`."""
  os.makedirs(workdir, exist_ok=True)
  seeds = np.arange(config.seed, config.seed + config.seeds)
  results: dict[str, Any] = {"variant": config.variant, "seeds": int(config.seeds),
                             "methods": {}}
  traces = {}
  t_start = time.time()
  for method in config.methods:
    spec = spec_from_config(config, method)
    total = toy.total_self_train_steps(spec)
    every = config.track_every if spec.method == "entropy" else 1
    progress = train_metrics.Progress(total, desc=f"toy[{config.variant}] {method}",
                                      interval=config.progress_interval_s)
    t0 = time.time()
    out = toy.run_seeds(seeds, spec, track_every=every,
                        chunk=min(total, config.chunk - config.chunk % every),
                        progress=progress.update)
    progress.close(total)
    traces[method] = out
    summary = summarize(out)
    summary["seconds"] = time.time() - t0
    summary["spec"] = dataclasses.asdict(spec)
    results["methods"][method] = summary
    results["bayes_acc"] = float(out["bayes_acc"].mean())
    results["source_w2_norm"] = _stats(out["w2_norm"][:, 0])
    results["source_target_acc"] = _stats(out["target_acc"][:, 0])
    print(f"{method}: ||w2|| {summary['w2_norm_start']['mean']:.3f} -> "
          f"{summary['w2_norm_end']['mean']:.3f} ({summary['measured_trend']}; sphere "
          f"diagnostic predicted {summary['predicted_trend_sphere']}), target acc "
          f"{summary['target_acc_start']['mean']:.4f} -> "
          f"{summary['target_acc_end']['mean']:.4f} (Bayes {results['bayes_acc']:.4f})")
  results["seconds"] = time.time() - t_start
  fileio.atomic_write_npz(os.path.join(workdir, "traces.npz"), **{
      f"{m}/{k}": v for m, out in traces.items() for k, v in out.items()})
  plot(os.path.join(workdir, "toy.png"), traces,
       f"{config.variant}: {config.seeds} seeds (vmapped), d1 = d2 = 2")
  fileio.atomic_write_json(os.path.join(workdir, "results.json"), results)
  return results
