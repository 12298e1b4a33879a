"""The TinyNAS pipeline: `run(config, workdir)`.

Per budget (SRAM, Flash):
  1. stage 1: rank the (W, R) spaces by the mean MACs of subnets that fit;
     CDF plot (and, for the first budget, the premise check: briefly train
     subnets of a few spaces and compare accuracy with mean MACs);
  2. stage 2: train the elastic supernet of the best space by progressive
     shrinking, then evolutionary search for the most accurate fitting subnet
     (supernet weights, BN recalibrated);
  3. final: the searched architecture and a MobileNetV2 scaled uniformly
     (width, resolution) to fit the same budget, each trained from scratch with
     the same recipe and tested on the real test set; plus the searched net
     fine-tuned from its supernet weights.

Every stage writes its result into the workdir and is skipped when that
result is already there, so an interrupted run resumes where it stopped
(supernet training resumes per phase).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Sequence

import ml_collections
import numpy as np

from jaxtiny import data
from jaxtiny import fileio
from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import profile as profile_lib
from jaxtiny.tinynas import search as search_lib
from jaxtiny.tinynas import space as space_lib
from jaxtiny.tinynas import supernet
from jaxtiny.tinynas import train as train_lib
from jaxtiny.train import checkpoint
from jaxtiny.train import metrics as metrics_lib

# MobileNetV2 (Sandler et al. 2018): (expand t, channels c, repeats n, stride s).
MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                 (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(width_mult: float, resolution: int, in_channels: int = 1,
                 num_classes: int = 10) -> arch_lib.Arch:
  """MobileNetV2 at width `width_mult`: 3x3 kernels; every layer's channels,
  the 32-channel stem and the 1280-channel feature mix included, scaled and
  rounded to multiples of 8 (as the MCUNet model zoo's mbv2-w0.35 is)."""
  md = space_lib.make_divisible
  stem = md(32 * width_mult)
  blocks = []
  cin = stem
  for t, c, n, s in MBV2_SETTINGS:
    cout = md(c * width_mult)
    for i in range(n):
      stride = s if i == 0 else 1
      blocks.append(arch_lib.Block(cin, cout, 3, stride, t,
                                   cin * t if t != 1 else cin,
                                   stride == 1 and cin == cout))
      cin = cout
  mix = md(1280 * width_mult)
  return arch_lib.Arch(resolution=resolution, in_channels=in_channels,
                       stem_channels=stem, blocks=tuple(blocks),
                       mix_channels=mix, num_classes=num_classes)


def scaled_mobilenet_v2(budget: space_lib.Budget, width_mults: Sequence[float],
                        resolutions: Sequence[int], **kw
                        ) -> tuple[arch_lib.Arch, float]:
  """The uniformly scaled MobileNetV2 with the most MACs that fits `budget`,
  and its width multiplier."""
  best, best_w, best_macs = None, 0.0, -1
  for w in width_mults:
    for r in resolutions:
      a = mobilenet_v2(w, r, **kw)
      p = profile_lib.profile(a)
      if budget.fits(p) and p["macs"] > best_macs:
        best, best_w, best_macs = a, float(w), p["macs"]
  if best is None:
    raise search_lib.SearchError(
        f"no MobileNetV2 with width in {tuple(width_mults)} and resolution in "
        f"{tuple(resolutions)} fits {budget.name}; add smaller widths.")
  return best, best_w


def _budgets(config) -> list[space_lib.Budget]:
  return [space_lib.Budget(int(s), int(f), config.sram_metric)
          for s, f in config.budgets]


def final_seeds(config) -> list[int]:
  """From-scratch trainings per final model, one count per budget
  (`config.final.seeds`: one int per entry of `config.budgets`)."""
  seeds = config.final.seeds
  seeds = [seeds] * len(config.budgets) if isinstance(seeds, int) else list(seeds)
  if len(seeds) != len(config.budgets) or any(int(k) < 1 for k in seeds):
    raise ValueError(f"final.seeds={tuple(seeds)}: give one count >= 1 per budget "
                     f"({len(config.budgets)} budgets), e.g. "
                     f"--config.final.seeds='{tuple([1] * len(config.budgets))}'.")
  return [int(k) for k in seeds]


def _recipe(config, **over) -> train_lib.Recipe:
  r = config.recipe
  kw = dict(batch_size=r.batch_size, learning_rate=r.learning_rate,
            warmup_steps=r.warmup_steps, weight_decay=r.weight_decay,
            label_smoothing=r.label_smoothing, kd_weight=r.kd_weight,
            num_devices=config.num_devices)
  kw.update(over)
  return train_lib.Recipe(**kw)


def _space_kw(config) -> dict:
  return dict(kernels=tuple(config.space.kernels),
              expands=tuple(config.space.expands),
              depths=tuple(config.space.depths))


def load_data(config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  x, y = data.load(config.dataset, "train", config.data_dir or None)
  xt, yt = data.load(config.dataset, "test", config.data_dir or None)
  v = config.val_size
  if not 0 < v < len(x):
    raise ValueError(f"val_size={v} must be between 1 and {len(x) - 1}.")
  y, yt = y.astype(np.int32), yt.astype(np.int32)
  return {"train": (x[:-v], y[:-v]), "val": (x[-v:], y[-v:]),
          "test": (xt, yt)}


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def _choice_to_json(c: space_lib.SubnetChoice) -> dict:
  return dataclasses.asdict(c)


def _choice_from_json(d: dict) -> space_lib.SubnetChoice:
  return space_lib.SubnetChoice(tuple(d["depths"]), tuple(d["kernels"]),
                                tuple(d["expands"]), int(d["resolution"]))


class _Logger:
  """Progress line + metrics.jsonl for one named training run."""

  def __init__(self, workdir: str, config, name: str, total: int):
    self.name = name
    self.progress = metrics_lib.Progress(total, desc=name,
                                         interval=config.progress_interval_s)
    self.writer = metrics_lib.MetricWriter(workdir, f"metrics_{name}.jsonl")
    self.every = config.log_every_steps
    self.total = total

  def __call__(self, step: int, m: dict) -> None:
    if step % self.every == 0 or step == self.total:
      vals = {k: float(v) for k, v in m.items()}
      self.writer.write(step, vals)
      self.progress.update(step, vals)
    if step == self.total:
      self.progress.close(step)


# ----------------------------------------------------------------- stage 1

def stage1(config, budget: space_lib.Budget, workdir: str
           ) -> list[dict]:
  path = os.path.join(workdir, f"stage1_{budget.name}.json")
  if os.path.exists(path):
    return _read_json(path)
  spaces = space_lib.grid(config.space.width_mults, config.space.resolutions,
                          **_space_kw(config))
  t0 = time.time()
  stats = space_lib.optimise_spaces(spaces, budget, config.space.num_samples,
                                    config.seed,
                                    config.space.min_fit_fraction)
  space_lib.plot_flops_cdf(stats, budget,
                           os.path.join(workdir, f"space_cdf_{budget.name}.png"),
                           min_fit_fraction=config.space.min_fit_fraction)
  ranked = [s.as_dict() for s in stats]
  fileio.atomic_write_json(path, ranked)
  print(f"stage 1 ({budget.name}): {len(spaces)} spaces x "
        f"{config.space.num_samples} samples in {time.time() - t0:.0f}s; best "
        f"{ranked[0]['space']} (mean {ranked[0]['mean_macs'] / 1e6:.2f} MMACs, "
        f"{100 * ranked[0]['fit_fraction']:.0f}% fit)", flush=True)
  return ranked


def _space_of(config, row: dict) -> space_lib.SearchSpace:
  return space_lib.SearchSpace(float(row["width_mult"]), int(row["resolution"]),
                               **_space_kw(config))


def premise(config, budget: space_lib.Budget, ranked: list[dict],
            splits: dict, workdir: str) -> dict:
  """Trains a few random fitting subnets of spaces spread over the ranking and
  reports whether their accuracy follows the spaces' mean MACs."""
  path = os.path.join(workdir, "premise.json")
  if os.path.exists(path):
    return _read_json(path)
  usable = [r for r in ranked if r["fit_fraction"] >= config.space.min_fit_fraction]
  n = min(config.premise.num_spaces, len(usable))
  picks = [usable[int(round(i))] for i in np.linspace(0, len(usable) - 1, n)]
  rng = np.random.default_rng(config.seed + 1)
  x, y = splits["train"]
  x, y = x[:config.premise.train_size], y[:config.premise.train_size]
  vx, vy = splits["val"]
  rows = []
  for row in picks:
    sp = _space_of(config, row)
    cons = search_lib.Constraint(sp, budget)
    accs, macs = [], []
    for k in range(config.premise.subnets_per_space):
      choice = search_lib.random_fitting(cons, rng)
      arch = space_lib.to_arch(sp, choice)
      name = f"premise_{sp.name}_{k}"
      log = _Logger(workdir, config, name, config.premise.steps)
      params, state = train_lib.train_arch(arch, x, y, config.premise.steps,
                                           _recipe(config), config.seed + k,
                                           on_step=log)
      predict = train_lib.predict_fn(arch)
      accs.append(train_lib.accuracy(lambda b: predict(params, state, b), vx, vy))
      macs.append(cons.profile(choice)["macs"])
    rows.append({"space": sp.name, "space_mean_macs": row["mean_macs"],
                 "subnet_macs": macs, "val_acc": accs,
                 "mean_val_acc": float(np.mean(accs))})
  order_macs = np.argsort(np.argsort([r["space_mean_macs"] for r in rows]))
  order_acc = np.argsort(np.argsort([r["mean_val_acc"] for r in rows]))
  rho = (float(np.corrcoef(order_macs, order_acc)[0, 1]) if len(rows) > 2
         else float("nan"))
  out = {"budget": budget.name, "steps": config.premise.steps,
         "train_size": int(len(x)), "spaces": rows, "spearman": rho}
  _plot_premise(out, os.path.join(workdir, "premise.png"))
  fileio.atomic_write_json(path, out)
  print(f"premise ({budget.name}): Spearman(mean MACs, accuracy) = {rho:.2f} "
        f"over {len(rows)} spaces", flush=True)
  return out


def _plot_premise(out: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from jaxtiny.train import plots
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for r in out["spaces"]:
    ax.scatter([r["space_mean_macs"] / 1e6] * len(r["val_acc"]),
               [100 * a for a in r["val_acc"]], s=18, alpha=0.6)
    ax.annotate(r["space"], (r["space_mean_macs"] / 1e6,
                             100 * r["mean_val_acc"]), fontsize=7)
  ax.set_xlabel("space mean MMACs (fitting subnets)")
  ax.set_ylabel("val accuracy (%) after short training")
  ax.set_title(f"Premise check, {out['budget']}: Spearman "
               f"{out['spearman']:.2f}")
  ax.grid(alpha=0.3)
  plots.save_figure(fig, path)
  plt.close(fig)


# ----------------------------------------------------------------- stage 2

def train_supernet(config, sp: space_lib.SearchSpace, budget_name: str,
                   splits: dict, workdir: str) -> train_lib.SupernetTrainer:
  """Progressive shrinking, one checkpoint per phase (resumable)."""
  trainer = train_lib.SupernetTrainer.create(sp, _recipe(config), config.seed)
  x, y = splits["train"]
  x, y = x[:config.supernet.train_size], y[:config.supernet.train_size]
  res = ()
  if config.supernet.elastic_resolution:
    res = (sp.resolution - 8, sp.resolution, sp.resolution + 8)
  template = (trainer.params, trainer.state)
  for i, (phase, steps) in enumerate(config.supernet.phases):
    ckpt = os.path.join(workdir, f"supernet_{budget_name}_{i}_{phase}.npz")
    if os.path.exists(ckpt):
      (trainer.params, trainer.state), _ = checkpoint.load_tree(ckpt, template)
    else:
      if phase in ("expand",):
        trainer.sort_channels()
      rng = np.random.default_rng(config.seed + 100 + i)
      log = _Logger(workdir, config, f"supernet_{budget_name}_{phase}", steps)
      trainer.train_phase(phase, x, y, int(steps), rng, res, on_step=log)
      checkpoint.save_tree(ckpt, (trainer.params, trainer.state),
                           {"phase": phase, "steps": int(steps)})
    if phase == "full":
      trainer.freeze_teacher()
  return trainer


def run_search(config, sp: space_lib.SearchSpace, budget: space_lib.Budget,
               trainer: train_lib.SupernetTrainer, splits: dict, workdir: str
               ) -> tuple[space_lib.SubnetChoice, float]:
  path = os.path.join(workdir, f"search_{budget.name}.json")
  if os.path.exists(path):
    d = _read_json(path)
    return _choice_from_json(d["best"]), d["best_score"]
  calib = splits["train"][0][:config.search.calib_size]
  vx, vy = splits["val"]
  vx, vy = vx[:config.search.val_size], vy[:config.search.val_size]
  cons = search_lib.Constraint(sp, budget)
  batch = min(250, config.search.calib_size, config.search.val_size)
  n_eval = [0]
  t0 = time.time()

  def score(choice):
    n_eval[0] += 1
    return train_lib.score_subnet(sp, trainer.params, trainer.state, choice,
                                  calib, vx, vy, batch)

  writer = metrics_lib.MetricWriter(workdir, f"search_{budget.name}.jsonl")

  def on_gen(gen, rec):
    writer.write(gen, rec)
    print(f"search ({budget.name}) generation {gen}/{config.search.generations}"
          f" | best {rec['best']:.4f} | mean {rec['mean']:.4f} | "
          f"{rec['evaluated']} subnets scored in {time.time() - t0:.0f}s",
          flush=True)

  res = ()
  if config.supernet.elastic_resolution:
    res = (sp.resolution - 8, sp.resolution, sp.resolution + 8)
  result = search_lib.evolve(
      cons, score, np.random.default_rng(config.seed + 7),
      population=config.search.population,
      parent_ratio=config.search.parent_ratio,
      mutation_ratio=config.search.mutation_ratio,
      generations=config.search.generations,
      mutate_prob=config.search.mutate_prob, resolutions=res,
      on_generation=on_gen)
  fileio.atomic_write_json(path, {"best": _choice_to_json(result.best),
                                  "best_score": result.best_score,
                                  "history": result.history,
                                  "num_scored": len(result.scores)})
  return result.best, result.best_score


# ----------------------------------------------------------------- final

def _train_and_test(config, arch: arch_lib.Arch, name: str, splits: dict,
                    workdir: str, steps: int, params=None, state=None,
                    recipe: train_lib.Recipe | None = None, seed_offset: int = 0) -> float:
  path = os.path.join(workdir, f"final_{name}.json")
  if os.path.exists(path):
    return _read_json(path)["test_acc"]
  x, y = splits["train"]
  log = _Logger(workdir, config, name, steps)
  params, state = train_lib.train_arch(arch, x, y, steps,
                                       recipe or _recipe(config), config.seed + seed_offset,
                                       params=params, state=state, on_step=log)
  predict = train_lib.predict_fn(arch)
  acc = train_lib.accuracy(lambda b: predict(params, state, b), *splits["test"])
  checkpoint.save_tree(os.path.join(workdir, f"weights_{name}.npz"),
                       (params, state), {"arch": arch_lib.to_dict(arch)})
  fileio.atomic_write_json(path, {"test_acc": acc, "steps": steps})
  print(f"{name}: test accuracy {100 * acc:.2f}%", flush=True)
  return acc


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  seeds_per_budget = final_seeds(config)  # Checked before anything is written.
  os.makedirs(workdir, exist_ok=True)
  fileio.atomic_write_json(os.path.join(workdir, "config.json"),
                           json.loads(config.to_json()))
  splits = load_data(config)
  results = []
  for bi, budget in enumerate(_budgets(config)):
    t_budget = time.time()
    ranked = stage1(config, budget, workdir)
    if ranked[0]["num_fitting"] == 0:
      raise search_lib.SearchError(
          f"no subnet of any space fits {budget.name}; widen the grid "
          "(smaller width_mults or resolutions) or raise the budget.")
    if bi == 0 and config.premise.num_spaces > 0:
      premise(config, budget, ranked, splits, workdir)
    sp = _space_of(config, ranked[0])
    trainer = train_supernet(config, sp, budget.name, splits, workdir)
    best, best_score = run_search(config, sp, budget, trainer, splits, workdir)
    arch = space_lib.to_arch(sp, best)
    arch_lib.save(arch, os.path.join(workdir, f"searched_{budget.name}.json"))
    mbv2, mbv2_w = scaled_mobilenet_v2(budget, config.final.mbv2_width_mults,
                               config.space.resolutions,
                               in_channels=sp.in_channels,
                               num_classes=sp.num_classes)
    arch_lib.save(mbv2, os.path.join(workdir, f"mbv2_{budget.name}.json"))
    steps = config.final.steps
    # From-scratch trainings, one per seed (seed 0 keeps the plain names).
    accs_s, accs_m = [], []
    for k in range(seeds_per_budget[bi]):
      tag = budget.name + (f"_seed{k}" if k else "")
      accs_s.append(_train_and_test(config, arch, f"searched_{tag}", splits,
                                    workdir, steps, seed_offset=k))
      accs_m.append(_train_and_test(config, mbv2, f"mbv2_{tag}", splits,
                                    workdir, steps, seed_offset=k))
    acc_s, acc_m = float(np.mean(accs_s)), float(np.mean(accs_m))
    s0 = train_lib.recalibrate_bn(sp, trainer.params, trainer.state, best,
                                  splits["train"][0][:config.search.calib_size],
                                  min(250, config.search.calib_size))
    _, p0, s0 = supernet.extract(sp, trainer.params, s0, best)
    acc_f = _train_and_test(
        config, arch, f"searched_finetuned_{budget.name}", splits, workdir,
        config.final.finetune_steps, params=p0, state=s0,
        recipe=_recipe(config, learning_rate=config.final.finetune_lr))
    results.append({
        "budget": budget.name, "sram_bytes": budget.sram_bytes,
        "flash_bytes": budget.flash_bytes, "space": sp.name,
        "width_mult": sp.width_mult, "resolution": sp.resolution,
        "searched": {"arch": f"searched_{budget.name}.json",
                     **profile_lib.profile(arch), "supernet_val_acc": best_score,
                     "test_acc": acc_s, "test_acc_per_seed": accs_s,
                     "test_acc_std": float(np.std(accs_s)),
                     "finetuned_test_acc": acc_f},
        "mbv2": {"arch": f"mbv2_{budget.name}.json",
                 "width_mult": mbv2_w,
                 "resolution": mbv2.resolution, **profile_lib.profile(mbv2),
                 "test_acc": acc_m, "test_acc_per_seed": accs_m,
                 "test_acc_std": float(np.std(accs_m))},
        "final_seeds": seeds_per_budget[bi],
        # Mean over seeds; per-seed margins pair the same seed of each model.
        "margin_points": 100 * (acc_s - acc_m),
        "margin_points_per_seed": [100 * (a - b) for a, b in zip(accs_s, accs_m)],
        # This invocation's time on the budget (stages reused from an earlier,
        # interrupted run are not counted).
        "wall_seconds_this_run": time.time() - t_budget})
  out = {"dataset": config.dataset, "results": results}
  fileio.atomic_write_json(os.path.join(workdir, "results.json"), out)
  md = format_results(results)
  fileio.atomic_write_bytes(os.path.join(workdir, "results.md"), md.encode())
  print(md, flush=True)
  if config.get("deploy") and config.deploy.enabled:
    out["deploy"] = deploy_stage(config, results, splits, workdir)
  return out


def deploy_stage(config, results: list[dict], splits: dict, workdir: str
                 ) -> dict:
  """TinyEngine deployment of every budget's final models (seed 0): int8
  quantization (calibrated on training images), a memory plan that must fit
  the budget's SRAM, generated C code compiled on the host and run on the
  test set (bit-exact with the integer reference required), the interpreter
  baseline, and a Cortex-M7 build. Writes deploy_<model>/ (sources and
  deploy.json, reused when present), deploy.json, deploy.md, deploy.png."""
  # pylint: disable=import-outside-toplevel
  from jaxtiny.tinyengine import deploy as deploy_lib
  from jaxtiny.tinyengine import evaluate
  from jaxtiny.tinyengine import generate
  from jaxtiny.tinyengine import graph
  d = config.deploy
  x_train = splits["train"][0][:d.calib]
  x_test, y_test = splits["test"]
  if d.test_images:
    x_test, y_test = x_test[:d.test_images], y_test[:d.test_images]
  rows = {}
  for r in results:
    for kind in d.models:
      name = f"{kind}_{r['budget']}"
      out_dir = os.path.join(workdir, f"deploy_{name}")
      record = os.path.join(out_dir, "deploy.json")
      if os.path.exists(record):
        rows[name] = _read_json(record)
        continue
      t = time.time()
      arch, _, g = generate.quantize_trained(
          os.path.join(workdir, f"weights_{name}.npz"), x_train, d.method)
      xq = graph.quantize_input(g, evaluate._float_inputs(  # pylint: disable=protected-access
          x_test, arch.resolution))
      row = deploy_lib.deploy(arch, g, out_dir, xq, labels=y_test,
                              timing_images=d.timing_images,
                              budget_bytes=r["sram_bytes"])
      row["float_acc"] = r[kind]["test_acc_per_seed"][0]
      row["budget_sram_bytes"] = r["sram_bytes"]
      row["budget_flash_bytes"] = r["flash_bytes"]
      row["seconds"] = time.time() - t
      if not (row["logits_equal_reference"] and
              row["generated_acc"] == row["int8_reference_acc"]):
        raise RuntimeError(f"{name}: the generated code's logits differ from "
                           "the integer reference; this is a bug.")
      fileio.atomic_write_json(record, row)
      rows[name] = row
      print(f"deploy {name}: peak SRAM {row['peak_sram_bytes']:,} B, "
            f"int8 {100 * row['generated_acc']:.2f}% (float "
            f"{100 * row['float_acc']:.2f}%), "
            f"{row['speedup_vs_interpreter']:.2f}x the interpreter", flush=True)
  fileio.atomic_write_json(os.path.join(workdir, "deploy.json"), rows)
  notes = ["Float accuracy: " + ", ".join(
      f"{n} {100 * r['float_acc']:.2f} %" for n, r in rows.items()), "",
           "Ratio: interpreter SRAM (greedy arena + op table + requantization "
           "tables) / planned peak SRAM of the generated code. Latency on the "
           "host, best of 5 runs over the timing images."]
  deploy_lib.write_report(rows, os.path.join(workdir, "deploy.md"),
                          os.path.join(workdir, "deploy.png"),
                          title=f"TinyEngine deployment ({config.dataset})",
                          notes=notes)
  return rows


def _acc_cell(m: dict) -> str:
  per_seed = m.get("test_acc_per_seed") or []
  if len(per_seed) > 1:
    return (f"{100 * m['test_acc']:.2f}% ± {100 * m['test_acc_std']:.2f} "
            f"({len(per_seed)} seeds)")
  return f"{100 * m['test_acc']:.2f}%"


def format_results(results: list[dict]) -> str:
  lines = ["| budget (SRAM / Flash) | model | (W, R) | MMACs | params | peak act. "
           "| flash | test acc |", "|---|---|---|---|---|---|---|---|"]
  for r in results:
    b = f"{r['sram_bytes'] // 1024} kB / {r['flash_bytes'] // 1024} kB"
    for name, m, wr in (
        ("TinyNAS (scratch)", r["searched"], (r["width_mult"], r["resolution"])),
        ("TinyNAS (fine-tuned)", dict(r["searched"],
                                      test_acc=r["searched"]["finetuned_test_acc"],
                                      test_acc_per_seed=[]),
         (r["width_mult"], r["resolution"])),
        ("MobileNetV2 scaled", r["mbv2"], (r["mbv2"]["width_mult"],
                                           r["mbv2"]["resolution"]))):
      lines.append(
          f"| {b} | {name} | ({wr[0]:g}, {wr[1]}) | {m['macs'] / 1e6:.2f} | "
          f"{m['params'] / 1e3:.1f}k | {m['peak_activation_bytes'] / 1024:.1f} kB"
          f" | {m['flash_bytes'] / 1024:.1f} kB | {_acc_cell(m)} |")
  return "\n".join(lines) + "\n"
