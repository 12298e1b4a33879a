"""The GS-WGAN paper's evaluation of a generated labelled dataset.

`evaluate(gen, dataset, out_dir)` computes, in the paper's column order:
IS (reference LeNet), FID (LeNet features), MLP accuracy, CNN accuracy, Avg
accuracy (12 scikit-learn models) and Calibrated accuracy (Avg generated / Avg
real), plus the within-class variety of the samples next to the real
training set's (`intra_class_l2`, `real_intra_class_l2`: mean pixel distance
between two samples of a class; a generator that ignores its latent scores
near 0 however sharp its digits). It writes `eval.json` and `eval_row.md`
into `out_dir` and resumes: the CNN trains in `out_dir/eval_cnn`
(checkpointed) and finished scikit-learn rows are kept in
`out_dir/eval_partial.json`. Those partial results belong to one generated set
and protocol (`out_dir/eval_source.json`: the sha256 of the
samples and labels, and `fast`); when either changes (a training run resumed
for more steps rewrites its gen_data.npz, or `--fast` is dropped) they are
discarded and recomputed, never reused. The real-data Avg that calibrates the
last column is computed once per dataset and protocol and cached under
`<data dir>/eval/`.

`fast=True` is the documented quick look: IS on 10,000 samples, FID on 5,000,
the CNN for 5 epochs, six scikit-learn models (FAST_MODELS) on a 10,000-sample
subsample, and (with a weights file) Inception-v3 FID on 2,000 samples against
2,000 real images; Avg and Calibrated are then over those six models, and
every output says `fast`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Callable, Optional

import numpy as np

from jaxtiny import data
from jaxtiny import fileio
from jaxtiny.eval import cnn
from jaxtiny.eval import generated as generated_lib
from jaxtiny.eval import inception
from jaxtiny.eval import metrics
from jaxtiny.eval import scores
from jaxtiny.eval import sklearn_suite

FAST = {"is_samples": 10_000, "fid_samples": 5_000, "cnn_epochs": cnn.FAST_EPOCHS,
        "sklearn_samples": 10_000, "inception_samples": 2_000,
        "inception_reference_samples": 2_000}
FULL = {"is_samples": scores.IS_SAMPLES, "fid_samples": scores.FID_SAMPLES,
        "cnn_epochs": cnn.EPOCHS, "sklearn_samples": 0,
        "inception_samples": scores.FID_SAMPLES, "inception_reference_samples": 0}
COLUMNS = ("IS", "FID (LeNet features)", "FID (Inception-v3)", "MLP", "CNN", "Avg",
           "Calibrated", "epsilon", "accountant", "run")
INCEPTION_SKIPPED = ("skipped: no Inception-v3 weights file was given (the ImageNet "
                     "weights cannot be downloaded here; pass --inception_weights=<"
                     "pt_inception-2015-12-05-6726825d.pth> to compute it); FID is "
                     "reported on LeNet features only")


SOURCE_MARKER = "eval_source.json"
# Resumable results kept in out_dir while an evaluation runs (files or folders).
PARTIAL_RESULTS = ("eval_partial.json", "eval_cnn", "eval_inception.partial.npz")


def fingerprint(gen: generated_lib.GeneratedSet) -> str:
  """sha256 of the samples and labels exactly as they are scored."""
  h = hashlib.sha256()
  for a in (gen.x, gen.y):
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def claim_out_dir(out_dir: str, digest: str, fast: bool,
                  log: Callable[[str], None] = print) -> list[str]:
  """Makes `out_dir`'s partial results belong to (digest, fast).

  Partial results left by an evaluation of another generated set or under the
  other protocol (or by a version that kept no marker) are removed, so they are
  recomputed instead of silently reused. Returns the names removed.
  """
  os.makedirs(out_dir, exist_ok=True)
  marker = os.path.join(out_dir, SOURCE_MARKER)
  previous = _load_json(marker)
  removed = []
  if previous.get("sha256") != digest or previous.get("fast") != fast:
    for name in PARTIAL_RESULTS:
      path = os.path.join(out_dir, name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)
      else:
        continue
      removed.append(name)
    if removed:
      what = ("a different generated set" if previous.get("sha256") != digest
              else f"the {'fast' if previous.get('fast') else 'full'} protocol")
      log(f"discarded partial results in {out_dir} ({', '.join(removed)}): they were "
          f"computed for {what}; recomputing")
  fileio.atomic_write_json(marker, {"sha256": digest, "fast": fast})
  return removed


def _sklearn_subset(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0):
  if not n or n >= len(y):
    return x, y
  idx = np.random.default_rng(seed).permutation(len(y))[:n]
  return x[idx], y[idx]


def _load_json(path: str) -> dict:
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return {}


def sklearn_accuracies(x, y, dataset: str, *, fast: bool, partial_path: str,
                       data_dir: Optional[str] = None,
                       log: Callable[[str], None] = print) -> dict[str, float]:
  """Accuracy of every suite model on the real test set; rows already in
  `partial_path` are reused, new ones are added to it as they finish."""
  protocol = FAST if fast else FULL
  models = list(sklearn_suite.FAST_MODELS if fast else sklearn_suite.all_models())
  done = _load_json(partial_path).get("per_model", {})
  todo = [m for m in models if m not in done]
  if todo:
    x_tr, y_tr = _sklearn_subset(x, y, protocol["sklearn_samples"])
    test_x, test_y = data.load(dataset, "test", data_dir)
    log(f"scikit-learn suite: {len(todo)} model(s) on {len(y_tr)} samples"
        + (f" ({len(models) - len(todo)} already done)" if done else ""))
    accs = sklearn_suite.evaluate_models(x_tr, y_tr, test_x.astype(np.float32) / 255.0,
                                         test_y, todo, log=log)
    done.update(accs)
    fileio.atomic_write_json(partial_path, {"per_model": done, "fast": fast})
  return {m: done[m] for m in models}


def real_average(dataset: str, *, fast: bool, data_dir: Optional[str] = None,
                 log: Callable[[str], None] = print) -> dict[str, float]:
  """The suite on the real training set (the "Real" row), cached per protocol."""
  cache_dir = os.path.join(data.data_dir(data_dir), "eval")
  os.makedirs(cache_dir, exist_ok=True)
  path = os.path.join(cache_dir, f"{dataset}_real_sklearn{'_fast' if fast else ''}.json")
  x, y = data.load(dataset, "train", data_dir)
  log(f"real-data reference for the Calibrated column ({path}) ...")
  return sklearn_accuracies(x.astype(np.float32) / 255.0, y, dataset, fast=fast,
                            partial_path=path, data_dir=data_dir, log=log)


def real_intra_class_distance(dataset: str, data_dir: Optional[str] = None) -> float:
  """`metrics.intra_class_distance` of the real training set in [0, 1] (the
  reference for a generated set's within-class variety)."""
  x, y = data.load(dataset, "train", data_dir)
  return metrics.intra_class_distance(x.astype(np.float32) / 255.0, y)


def background_on_test_split(gen: generated_lib.GeneratedSet, dataset: str,
                             data_dir: Optional[str] = None) -> dict:
  """`metrics.background_stats` of a generated set against the real test split
  in [0, 1]: what the generator draws where real images are blank. Raises
  ValueError when the split has no blank pixel (mean below 0.01)."""
  real_x, _ = data.load(dataset, "test", data_dir)
  return metrics.background_stats(gen.x, gen.y, real_x.astype(np.float32) / 255.0)


REAL_GENERATOR = "real data"
# Per-method folders of a federated workdir (experiments.gswgan_federated).
METHOD_DIRS = ("gswgan", "fedavg_gan")


def is_real_training_set(gen: generated_lib.GeneratedSet) -> bool:
  """True for the set `experiments.evaluate --gen=real` builds (the Real row)."""
  return (gen.run or {}).get("generator") == REAL_GENERATOR


def evaluate(gen: generated_lib.GeneratedSet, dataset: str, out_dir: str, *,
             fast: bool = False, data_dir: Optional[str] = None,
             classifier_path: Optional[str] = None,
             inception_weights: Optional[str] = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs the whole evaluation; returns (and writes) the eval.json record.

  `inception_weights`, when given, is the FID Inception-v3 weights file and
  adds the standard FID (`fid_inception`); without it that entry is null and
  `fid_inception_note` says it was skipped.
  """
  protocol = FAST if fast else FULL
  # Read (and validate) the weights now, not after an hour of other metrics.
  loaded = inception.load(inception_weights) if inception_weights else None
  digest = fingerprint(gen)
  claim_out_dir(out_dir, digest, fast, log)
  # The full protocol needs its sample counts (a clear error otherwise); the
  # quick look uses what there is, up to its own counts.
  n_is, n_fid = protocol["is_samples"], protocol["fid_samples"]
  if fast:
    n_is, n_fid = min(n_is, len(gen.y)), min(n_fid, len(gen.y))
  log(f"[1/4] IS and FID (LeNet features) on {len(gen.y)} samples from {gen.path}")
  quality = scores.sample_quality(gen, dataset, data_dir, is_samples=n_is,
                                  fid_samples=n_fid, classifier_path=classifier_path,
                                  log=log)
  log(label_summary(quality))
  variety = {"intra_class_l2": metrics.intra_class_distance(gen.x, gen.y),
             "real_intra_class_l2": real_intra_class_distance(dataset, data_dir)}
  log(f"within-class variety (mean pixel L2 between two samples of a class): "
      f"{variety['intra_class_l2']:.2f}, real training set "
      f"{variety['real_intra_class_l2']:.2f}")
  if inception_weights:
    n_inc = protocol["inception_samples"]
    if fast:
      n_inc = min(n_inc, len(gen.y))
    log(f"[1/4] FID (Inception-v3 features, weights {inception_weights})")
    standard = scores.inception_fid(
        gen, dataset, inception_weights, out_dir, data_dir, fid_samples=n_inc,
        reference_samples=protocol["inception_reference_samples"], loaded=loaded, log=log)
    inception_note = (f"Inception-v3 pool3 features: {standard['fid_inception_samples']} "
                      f"samples vs {standard['fid_inception_reference_samples']} real "
                      f"training images; weights sha256 "
                      f"{standard['inception_weights_sha256']}")
  else:
    standard = {"fid_inception": None}
    inception_note = INCEPTION_SKIPPED
  log(f"[2/4] CNN accuracy ({protocol['cnn_epochs']} epochs)")
  cnn_acc = cnn.cnn_accuracy(gen, dataset, os.path.join(out_dir, "eval_cnn"), data_dir,
                             epochs=protocol["cnn_epochs"])
  log("[3/4] scikit-learn suite on real data (cached after the first run)")
  real = real_average(dataset, fast=fast, data_dir=data_dir, log=log)
  if is_real_training_set(gen):
    # The Real row: the "generated" set is the training split itself, so the
    # suite on it is exactly the cached real-data run.
    log("[4/4] the scored set is the real training split: reusing the real-data suite")
    per_model = dict(real)
  else:
    log("[4/4] scikit-learn suite on the generated data")
    per_model = sklearn_accuracies(gen.x, gen.y, dataset, fast=fast,
                                   partial_path=os.path.join(out_dir, "eval_partial.json"),
                                   data_dir=data_dir, log=log)
  avg = float(np.mean(list(per_model.values())))
  real_avg = float(np.mean(list(real.values())))
  record = {
      "dataset": dataset, "n_samples": int(len(gen.y)), "source": gen.path,
      "source_sha256": digest,
      "is_mean": quality["is_mean"], "is_std": quality["is_std"],
      "is_samples": quality["is_samples"],
      "fid_lenet": quality["fid_lenet"], "fid_samples": quality["fid_samples"],
      **standard, "fid_inception_note": inception_note,
      "label_acc": quality["label_acc"],
      **{k: quality[k] for k in ("label_acc_per_class", "label_misread", "label_confusion")},
      **variety,
      "mlp_acc": per_model[sklearn_suite.MLP], "cnn_acc": cnn_acc, "avg_acc": avg,
      "real_avg_acc": real_avg, "calibrated_acc": avg / real_avg,
      "per_model": per_model, "real_per_model": real, "fast": fast,
      "epsilon": gen.epsilon, "accountant": gen.accountant, "run": gen.run,
  }
  fileio.atomic_write_json(os.path.join(out_dir, "eval.json"), _jsonable(record))
  row = markdown_row(record, name=os.path.basename(os.path.dirname(gen.path)) or gen.path)
  fileio.atomic_write_bytes(os.path.join(out_dir, "eval_row.md"),
                            (markdown_header() + row + "\n").encode())
  log(markdown_header() + row)
  if record["fid_inception"] is None:
    log(f"FID with Inception-v3 features: {INCEPTION_SKIPPED}.")
  else:
    log(f"FID with Inception-v3 features: {record['fid_inception']:.2f} ({inception_note}).")
  return record


def label_summary(quality: dict) -> str:
  """One line: label accuracy per conditioning label, and each label's most
  common misreading when it takes at least 5 % of that label's samples."""
  acc = " ".join(f"{i}:{a:.2f}" for i, a in enumerate(quality["label_acc_per_class"])
                 if a is not None)
  worst = [(m["share"], i, m["as"]) for i, m in enumerate(quality["label_misread"])
           if m and m["share"] >= 0.05]
  line = f"label accuracy per label ({quality['label_acc']:.3f} overall): {acc}"
  if worst:
    line += "; misread: " + ", ".join(f"{i} as {j} {s:.0%}" for s, i, j in sorted(worst)[::-1])
  return line


def _jsonable(obj):
  if isinstance(obj, float) and not np.isfinite(obj):
    return str(obj)  # "inf" (non-private runs), as in the privacy ledger.
  if isinstance(obj, dict):
    return {k: _jsonable(v) for k, v in obj.items()}
  return obj


def markdown_header() -> str:
  cols = ("run",) + COLUMNS[:-1]
  return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"


def _run_scale(run: dict) -> str:
  keys = (("generator", ""), ("discriminators", "K="), ("steps", "T="),
          ("users", "users="), ("rounds", "rounds="), ("noise_multiplier", "sigma="),
          ("pixel_floor", "pixel floor "))
  return ", ".join(f"{p}{run[k]}" for k, p in keys if k in run)


def _epsilon_cell(record: dict) -> str:
  eps = record.get("epsilon")
  return "-" if eps is None else (f"{float(eps):.3g}" if str(eps) != "inf" else "inf")


def _run_label(record: dict, name: str) -> str:
  scale = _run_scale(record.get("run") or {})
  return f"{name}{' (fast)' if record.get('fast') else ''}" + (f" [{scale}]" if scale else "")


def markdown_row(record: dict, name: str) -> str:
  eps_s = _epsilon_cell(record)
  label = _run_label(record, name)
  fid_inc = record.get("fid_inception")
  fid_inc_s = "skipped" if fid_inc is None else f"{float(fid_inc):.2f}"
  return (f"| {label} | {record['is_mean']:.2f} ± {record['is_std']:.2f} | "
          f"{record['fid_lenet']:.2f} | {fid_inc_s} | {record['mlp_acc']:.2f} | "
          f"{record['cnn_acc']:.2f} | "
          f"{record['avg_acc']:.2f} | {100 * record['calibrated_acc']:.0f}% | {eps_s} | "
          f"{record.get('accountant') or '-'} |")


def collect(paths: list[str]) -> list[tuple[str, dict]]:
  """(name, eval.json record) for every path: a run dir, a folder of runs, or a
  federated workdir (its per-method `<method>/eval/eval.json`, named
  `<workdir>/<method>`)."""
  found = []
  for name, f in collect_files(paths):
    with open(f) as fh:
      found.append((name, json.load(fh)))
  return found


def collect_files(paths: list[str]) -> list[tuple[str, str]]:
  """(name, path of its eval.json) for every run under `paths` (see `collect`)."""
  found = []

  def record_in(d: str) -> Optional[str]:
    for f in (os.path.join(d, "eval.json"), os.path.join(d, "eval", "eval.json")):
      if os.path.exists(f):
        return f
    return None

  def name_of(d: str, f: str) -> str:
    d = os.path.normpath(d)
    if os.path.basename(d).startswith("pixel_floor_"):
      # `experiments.evaluate --pixel_floor` output: named after the run it scored
      # (`<run>/pixel_floor_T`, or `<workdir>/<method>/pixel_floor_T`).
      parent = os.path.dirname(d)
      up = [os.path.basename(d), os.path.basename(parent)]
      if os.path.basename(parent) in METHOD_DIRS:
        up.append(os.path.basename(os.path.dirname(parent)))
      return "/".join(reversed(up))
    if f.endswith(os.path.join("eval", "eval.json")) and os.path.basename(d) != "eval":
      return f"{os.path.basename(os.path.dirname(d))}/{os.path.basename(d)}"
    return os.path.basename(d)

  for p in paths:
    direct = record_in(p)
    candidates = [p] if direct else sorted(
        os.path.join(p, d) for d in (os.listdir(p) if os.path.isdir(p) else []))
    for c in candidates:
      f = record_in(c)
      if f:
        found.append((name_of(c, f), f))
  return found


# Settings that do not change what a run computes (where it logs, how often it
# checkpoints) and the seed: runs that differ only in these are one setting.
_NOT_A_SETTING = frozenset({
    "seed", "methods", "data_dir", "eval_classifier", "progress_interval_s",
    "log_every_rounds", "checkpoint_every_rounds", "sample_every_rounds",
    "log_every_steps", "checkpoint_every_steps", "sample_every_steps", "bank_cache_mb"})


def run_config(eval_json: str) -> Optional[dict]:
  """The config.json of the run an eval.json belongs to (the closest one in
  the three folders above it: `<run>/eval/`, `<workdir>/<method>/eval/`), or
  None when there is none."""
  d = os.path.dirname(os.path.abspath(eval_json))
  for _ in range(3):
    f = os.path.join(d, "config.json")
    if os.path.isfile(f):
      with open(f) as fh:
        return json.load(fh)
    d = os.path.dirname(d)
  return None


def group_by_seed(files: list[tuple[str, str]]) -> list[tuple[str, list[dict], list]]:
  """Runs of the same method and settings, different seeds, as one group:
  (name of the first, records, seeds) in the order first met. A run without a
  config.json is a group of its own (its settings are unknown)."""
  groups: dict[Any, tuple[str, list[dict], list]] = {}
  for name, f in files:
    with open(f) as fh:
      record = json.load(fh)
    config = run_config(f)
    if config is None:
      key: Any = ("unknown", f)
      seed = None
    else:
      settings = {k: v for k, v in config.items() if k not in _NOT_A_SETTING}
      key = (method_of(record), record.get("fast"), (record.get("run") or {}).get("pixel_floor"),
             json.dumps(settings, sort_keys=True))
      seed = config.get("seed")
    if key not in groups:
      groups[key] = (name, [], [])
    groups[key][1].append(record)
    groups[key][2].append(seed)
  return list(groups.values())


def markdown_group_row(records: list[dict], name: str, seeds: list) -> str:
  """One table row for runs that differ only in their seed: each score as the
  mean ± the sample standard deviation over the runs (n - 1 in the
  denominator); epsilon and the accountant from the first (equal settings give
  equal epsilon). A group of one run is `markdown_row`'s row."""
  if len(records) == 1:
    return markdown_row(records[0], name)

  def col(key: str, fmt: str, scale: float = 1.0) -> str:
    vals = [r.get(key) for r in records]
    if any(v is None for v in vals):
      return "skipped" if key == "fid_inception" else "-"
    v = scale * np.asarray(vals, np.float64)
    return f"{v.mean():{fmt}} ± {v.std(ddof=1):{fmt}}"

  first = records[0]
  eps_s = _epsilon_cell(first)
  seeds_s = ", ".join(str(s) for s in seeds)
  label = _run_label(first, name) + f" ({len(records)} seeds: {seeds_s})"
  return (f"| {label} | {col('is_mean', '.2f')} | {col('fid_lenet', '.1f')} | "
          f"{col('fid_inception', '.1f')} | {col('mlp_acc', '.3f')} | {col('cnn_acc', '.3f')} | "
          f"{col('avg_acc', '.3f')} | {col('calibrated_acc', '.1f', 100)}% | {eps_s} | "
          f"{first.get('accountant') or '-'} |")


def label_accuracy_groups(files: list[tuple[str, str]]) -> list[tuple[str, np.ndarray, list]]:
  """Per-label label accuracy of each group of seeds (`group_by_seed`):
  (name, accuracies [runs, labels], seeds), one width for all groups (the most
  labels any run has), NaN for a label a run drew no samples of or lacks. Raises ValueError naming the runs whose eval.json predates the
  per-label breakdown (score them again to add it)."""
  old = []
  for name, f in files:
    with open(f) as fh:
      if "label_acc_per_class" not in json.load(fh):
        old.append(name)
  if old:
    raise ValueError(f"no per-label label accuracy in the eval.json of {old}: "
                     "it was scored before the breakdown existed; score it again "
                     "(python -m experiments.evaluate --gen=<run> --dataset=<name> [--fast]).")
  groups = group_by_seed(files)
  num_labels = max(len(r["label_acc_per_class"]) for _, records, _ in groups for r in records)
  out = []
  for name, records, seeds in groups:
    if len({len(r["label_acc_per_class"]) for r in records}) != 1:
      raise ValueError(f"runs grouped as {name} have different numbers of labels.")
    acc = np.full((len(records), num_labels), np.nan)
    for i, r in enumerate(records):
      acc[i, :len(r["label_acc_per_class"])] = [
          np.nan if a is None else a for a in r["label_acc_per_class"]]
    out.append((name, acc, seeds))
  return out


def seed_mean_std(acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Column-wise mean and sample std (n - 1) of [runs, columns] over the runs
  that have a value (not NaN); NaN where no run, or (std) fewer than two, has one."""
  acc = np.asarray(acc, np.float64)
  n = np.sum(~np.isnan(acc), axis=0)
  total = np.nansum(acc, axis=0)
  mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
  sq = np.nansum((acc - mean) ** 2, axis=0)
  std = np.where(n > 1, np.sqrt(sq / np.maximum(n - 1, 1)), np.nan)
  return mean, std


def markdown_label_table(groups: list[tuple[str, np.ndarray, list]]) -> str:
  """Markdown table: one row per group, its accuracy on each label and the
  mean over labels (each as mean ± sample std over the seeds that drew that
  label, when more than one did)."""
  num_labels = groups[0][1].shape[1]
  lines = ["| run | " + " | ".join(str(i) for i in range(num_labels)) + " | mean of labels |",
           "|---|" + "---|" * (num_labels + 1)]
  for name, acc, seeds in groups:
    label = name if len(seeds) == 1 else f"{name} ({len(seeds)} seeds: " + \
        ", ".join(str(s) for s in seeds) + ")"
    per_run_mean = seed_mean_std(acc.T)[0][:, None]  # Each run's mean over its labels.
    mean, std = seed_mean_std(np.concatenate([acc, per_run_mean], axis=1))
    cells = ["-" if np.isnan(m) else f"{m:.3f}" if np.isnan(s) else f"{m:.3f} ± {s:.3f}"
             for m, s in zip(mean, std)]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def method_of(record: dict) -> str:
  """The series a record belongs to in a privacy-utility plot."""
  method_dir = os.path.basename(os.path.dirname(record.get("source", "")))
  return "DP-FedAvg-GAN" if method_dir == "fedavg_gan" else "GS-WGAN"
