"""Scores a generated labelled dataset the way the GS-WGAN paper does.

  # One run (a GS-WGAN workdir, or any .npz with x [N,28,28(,1)] in [0,1], y):
  python -m experiments.evaluate --gen=runs/gswgan_cpu --dataset=mnist [--fast]
  # The "Real" row (real training images scored as if generated):
  python -m experiments.evaluate --gen=real --dataset=mnist
  # Many runs into one Markdown table, and a privacy-utility curve:
  python -m experiments.evaluate --table runs/*
  # Runs that differ only in their seed as one row (mean ± std over seeds):
  python -m experiments.evaluate --table --group_seeds runs/*
  python -m experiments.evaluate --curve=curve.png runs/*
  # Label accuracy per conditioning label (table, and a bar chart):
  python -m experiments.evaluate --labels=labels.png runs/*
  # Federated workdirs (per-method eval/ folders; GS-WGAN and DP-FedAvg-GAN
  # are separate series of the curve):
  python -m experiments.evaluate --curve=fed.png runs/gswgan_fed_*

Columns, in the paper's order: IS (reference LeNet, 60,000 samples, 10
splits), FID (LeNet features; 20,000 samples vs the real training set), the
standard FID on Inception-v3 features when you pass the weights file
(--inception_weights; the ImageNet weights cannot be downloaded here, so it is
otherwise reported as skipped; about 8 images/s on 2 CPU cores, so the
60,000-image reference statistics take ~2 h once, then are cached), MLP
accuracy, CNN accuracy (LeNet, SGD, 50 epochs), Avg accuracy (12 scikit-learn
models), Calibrated accuracy (Avg / Avg on real data), plus the run's epsilon
and accountant. Needs the reference classifier of the dataset
(`python -m experiments.classifier --config=experiments/configs/classifier.py:mnist`).

--pixel_floor=T sets generated pixels below T to 0 first (real digits have
exact-zero backgrounds; a generator's faint nonzero background can mislead the
pixel-threshold models RandomForest and GaussianNB) and writes into
<out>/pixel_floor_T/, keeping the raw samples' results:
  python -m experiments.evaluate --gen=runs/fed/gswgan --dataset=mnist --fast --pixel_floor=0.05

--background prints what a generator draws where real digits are blank
(exact zeros, mean value, class dependence; metrics.background_stats) against
the real test set, and scores nothing:
  python -m experiments.evaluate --gen=runs/fed/gswgan --dataset=mnist --background

--fast is a quick look, not the paper's protocol: IS on 10,000 samples, FID
on 5,000, CNN for 5 epochs, 6 scikit-learn models (LogisticRegression,
GaussianNB, BernoulliNB, LDA, MLP, RandomForest) on 10,000 samples. Outputs
say `fast`. The full suite takes about an hour on 2 CPU cores (the CNN's 50
epochs dominate); the real-data reference is computed once and cached.

Outputs next to the generated data (or in --out): eval.json, eval_row.md,
eval_cnn/ (resumable CNN training), eval_partial.json (finished
scikit-learn rows, so an interrupted run resumes).
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
import numpy as np

from jaxtiny import data
from jaxtiny.eval import generated
from jaxtiny.eval import suite
from jaxtiny.train import plots

_GEN = flags.DEFINE_string("gen", None, "GS-WGAN workdir, .npz file, or 'real'.")
_DATASET = flags.DEFINE_enum("dataset", None, ["mnist", "fashion_mnist"],
                             "Dataset the samples imitate (selects classifier and test set).")
_FAST = flags.DEFINE_bool("fast", False, "Quick look (documented subset).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: next to the data).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Data folder ('' = $JAXTINY_DATA).")
_INCEPTION = flags.DEFINE_string(
    "inception_weights", os.environ.get("JAXTINY_INCEPTION_WEIGHTS", ""),
    "FID Inception-v3 weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or an "
    ".npz with its keys) for the standard FID; default $JAXTINY_INCEPTION_WEIGHTS; "
    "empty: skipped (FID on LeNet features only).")
_PIXEL_FLOOR = flags.DEFINE_float(
    "pixel_floor", 0.0, "Set generated pixels below this value to 0 before scoring (a "
    "post-processing of the release; 0 = off). Writes into <out>/pixel_floor_<value>/ so "
    "the raw samples' eval.json is kept.")
_BACKGROUND = flags.DEFINE_bool(
    "background", False, "Print the generated samples' values on the real test set's "
    "background (pixels whose real mean is below 0.01) and stop; no scoring.")
_TABLE = flags.DEFINE_bool("table", False, "Print a Markdown table of the eval.json "
                           "files under the given folders.")
_GROUP_SEEDS = flags.DEFINE_bool("group_seeds", False, "With --table: one row per method "
                                 "and settings, mean ± standard deviation over the runs "
                                 "that differ only in their seed (from each run's "
                                 "config.json).")
_CURVE = flags.DEFINE_string("curve", None, "Write a privacy-utility PNG (epsilon vs "
                             "CNN accuracy and IS) of the runs under the given folders.")
_LABELS = flags.DEFINE_string("labels", None, "Print the label accuracy per conditioning "
                              "label of the runs under the given folders (seeds of one "
                              "setting grouped, as --group_seeds) and write it as a bar "
                              "chart PNG here.")


def _real_set(dataset: str, data_dir: str, out: str) -> generated.GeneratedSet:
  x, y = data.load(dataset, "train", data_dir or None)
  path = os.path.join(out, "real.npz")
  return generated.GeneratedSet(x=(x.astype(np.float32) / 255.0), y=y.astype(np.int32),
                                path=path, run={"dataset": dataset,
                                                   "generator": suite.REAL_GENERATOR})


def _table(paths: list[str], group_seeds: bool = False) -> str:
  if group_seeds:
    rows = [suite.markdown_group_row(rs, n, seeds)
            for n, rs, seeds in suite.group_by_seed(suite.collect_files(paths))]
  else:
    rows = [suite.markdown_row(r, n) for n, r in suite.collect(paths)]
  if not rows:
    raise app.UsageError(f"no eval.json under {paths}; run --gen=... first.")
  return suite.markdown_header() + "\n".join(rows)


def _curve(path: str, paths: list[str]) -> None:
  found = [(n, r) for n, r in suite.collect(paths)
           if r.get("epsilon") not in (None, "inf")]
  if not found:
    raise app.UsageError(f"no private runs (eval.json with a finite epsilon) under {paths}.")
  panels = {"CNN accuracy": {}, "Inception Score (LeNet)": {}}
  for method in sorted({suite.method_of(r) for _, r in found}, reverse=True):
    rows = [(float(r["epsilon"]), r) for _, r in found if suite.method_of(r) == method]
    eps = [e for e, _ in rows]
    panels["CNN accuracy"][method] = (eps, [r["cnn_acc"] for _, r in rows])
    panels["Inception Score (LeNet)"][method] = (eps, [r["is_mean"] for _, r in rows])
  plots.save_xy_panels(path, panels, xlabel="epsilon", logx=True, title="privacy-utility")
  print(f"wrote {path} ({len(found)} runs)")


def _labels(path: str, paths: list[str]) -> None:
  files = suite.collect_files(paths)
  if not files:
    raise app.UsageError(f"no eval.json under {paths}; run --gen=... first.")
  try:
    groups = suite.label_accuracy_groups(files)
  except ValueError as e:
    sys.exit(f"error: --labels: {e}")
  print(suite.markdown_label_table(groups))
  num_labels = groups[0][1].shape[1]
  series = {}
  for name, acc, seeds in groups:
    mean, std = suite.seed_mean_std(acc)
    series[name if len(seeds) == 1 else f"{name} ({len(seeds)} seeds)"] = (
        mean, None if len(seeds) == 1 else np.nan_to_num(std))
  plots.save_grouped_bars(path, [str(i) for i in range(num_labels)], series,
                          xlabel="conditioning label",
                          ylabel="label accuracy (reference classifier)",
                          title="label accuracy per conditioning label", ylim=(0.0, 1.0))
  print(f"wrote {path} ({len(files)} runs, {len(groups)} groups)")


def main(argv):
  paths = argv[1:]
  if _TABLE.value or _CURVE.value or _LABELS.value:
    if not paths:
      raise app.UsageError("--table/--curve/--labels need run folders, e.g. `--table runs/*`.")
    if _TABLE.value:
      print(_table(paths, _GROUP_SEEDS.value))
    if _CURVE.value:
      _curve(_CURVE.value, paths)
    if _LABELS.value:
      _labels(_LABELS.value, paths)
    return
  if _GROUP_SEEDS.value:
    raise app.UsageError("--group_seeds only applies to --table.")
  if paths:
    raise app.UsageError(f"unexpected arguments {paths} (they are only for "
                         "--table/--curve/--labels).")
  if not _GEN.value or not _DATASET.value:
    raise app.UsageError("--gen and --dataset are required, e.g. "
                         "--gen=runs/gswgan_cpu --dataset=mnist.")
  if _GEN.value == "real" and _PIXEL_FLOOR.value:
    raise app.UsageError("--pixel_floor post-processes generated samples; the Real row "
                         "(--gen=real) is scored as stored.")
  if _GEN.value == "real" and _BACKGROUND.value:
    raise app.UsageError("--background compares generated samples with the real test "
                         "set; pass --gen=<workdir or .npz>.")
  if _GEN.value == "real":
    out = _OUT.value or os.path.join("runs", f"real_{_DATASET.value}")
    gen = _real_set(_DATASET.value, _DATA_DIR.value, out)
  else:
    try:
      gen = generated.load_generated(_GEN.value)
    except (FileNotFoundError, ValueError) as e:
      sys.exit(f"error: {e}")
    out = _OUT.value or (_GEN.value if os.path.isdir(_GEN.value)
                         else os.path.dirname(os.path.abspath(_GEN.value)))
  if _BACKGROUND.value:
    stats = suite.background_on_test_split(gen, _DATASET.value, _DATA_DIR.value or None)
    print(f"{gen.path}: " + ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items()))
    return
  if _PIXEL_FLOOR.value:
    try:
      gen = generated.with_pixel_floor(gen, _PIXEL_FLOOR.value)
    except ValueError as e:
      sys.exit(f"error: --pixel_floor: {e}")
    if not _OUT.value:
      out = os.path.join(out, f"pixel_floor_{_PIXEL_FLOOR.value:g}")
  try:
    suite.evaluate(gen, _DATASET.value, out, fast=_FAST.value,
                   data_dir=_DATA_DIR.value or None,
                   inception_weights=_INCEPTION.value or None)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
