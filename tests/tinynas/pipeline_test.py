"""Supernet training compiles once per resolution; the smoke pipeline end to
end (on real Fashion-MNIST) and its resume."""

import json
import os

import numpy as np

from experiments.configs import mcunet as mcunet_config
from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import pipeline
from jaxtiny.tinynas import profile as profile_lib
from jaxtiny.tinynas import space as space_lib
from jaxtiny.tinynas import train as train_lib
from tests import helpers


def test_supernet_steps_compile_once_per_resolution_not_per_subnet():
  sp = space_lib.SearchSpace(0.2, 24, kernels=(3, 5), expands=(2, 3),
                             depths=(1, 2))
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
  y = rng.integers(0, 10, 64).astype(np.int32)
  trainer = train_lib.SupernetTrainer.create(
      sp, train_lib.Recipe(batch_size=8, warmup_steps=1), seed=0)
  seen = []
  drawn = trainer.train_phase("expand", x, y, 10, np.random.default_rng(1),
                              (20, 24),
                              on_step=lambda i, m: seen.append(float(m["loss"])))
  assert len(seen) == 10 and all(np.isfinite(seen))
  # 10 steps on (almost surely) 10 different subnets at 2 resolutions: exactly
  # 2 compiled programs.
  assert len(set(drawn)) >= 8
  assert {c.resolution for c in drawn} == {20, 24}
  assert trainer.step_cache_size() == 2


def test_smoke_pipeline_end_to_end_and_resume(tmp_path):
  helpers.require_prepared("fashion_mnist")
  config = mcunet_config.get_config("smoke")
  workdir = str(tmp_path / "run")
  out = pipeline.run(config, workdir)
  (res,) = out["results"]
  budget = space_lib.Budget(*config.budgets[0])
  searched = arch_lib.load(os.path.join(workdir, res["searched"]["arch"]))
  mbv2 = arch_lib.load(os.path.join(workdir, res["mbv2"]["arch"]))
  for a in (searched, mbv2):
    assert budget.fits(profile_lib.profile(a))
    assert a.in_channels == 1 and a.num_classes == 10
  for key in ("test_acc", "finetuned_test_acc", "supernet_val_acc"):
    assert 0.0 <= res["searched"][key] <= 1.0
  assert 0.0 <= res["mbv2"]["test_acc"] <= 1.0
  for name in ("space_cdf_sram24k-flash160k.png", "premise.png", "premise.json",
               "search_sram24k-flash160k.jsonl", "results.md"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  history = [json.loads(l) for l in
             open(os.path.join(workdir, "search_sram24k-flash160k.jsonl"))]
  assert [h["step"] for h in history] == list(range(config.search.generations + 1))
  assert history[-1]["best"] >= history[0]["best"]
  # Resume: a second run reuses every stage's output and trains nothing.
  weights = os.path.join(workdir, "weights_searched_sram24k-flash160k.npz")
  stamp = os.path.getmtime(weights)
  again = pipeline.run(config, workdir)
  assert again == out
  assert os.path.getmtime(weights) == stamp
