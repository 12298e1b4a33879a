"""Supernet training compiles once per resolution; the smoke pipeline end to
end (on real Fashion-MNIST) and its resume."""

import json
import os

import numpy as np
import pytest

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
  # Deployment: both final models planned within the SRAM budget, generated,
  # compiled and run bit-exact with the integer reference.
  assert set(out["deploy"]) == {"searched_sram24k-flash160k",
                                "mbv2_sram24k-flash160k"}
  for name, d in out["deploy"].items():
    assert d["logits_equal_reference"] and d["sanitized_equal_reference"], name
    assert d["poisoned_equal_reference"] and d["interpreter_equal_reference"]
    assert d["generated_acc"] == d["int8_reference_acc"]
    assert d["images"] == config.deploy.test_images
    assert d["peak_sram_bytes"] <= budget.sram_bytes
    assert d["cortex_m7_sram_equals_plan"]
    src = os.path.join(workdir, f"deploy_{name}", "model.c")
    assert os.path.getsize(src) > 0
  for name in ("deploy.md", "deploy.png", "deploy.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  # Resume: a second run reuses every stage's output and trains nothing.
  weights = os.path.join(workdir, "weights_searched_sram24k-flash160k.npz")
  stamp = os.path.getmtime(weights)
  again = pipeline.run(config, workdir)
  strip = lambda o: [{k: v for k, v in r.items()  # noqa: E731
                      if k != "wall_seconds_this_run"} for r in o["results"]]
  assert strip(again) == strip(out)
  assert again["deploy"] == json.loads(json.dumps(out["deploy"]))
  assert again["results"][0]["wall_seconds_this_run"] < \
      out["results"][0]["wall_seconds_this_run"]
  assert os.path.getmtime(weights) == stamp
  # More seeds: seed 0 is reused, seed 1 is trained, the mean is reported.
  config2 = mcunet_config.get_config("smoke")
  with config2.unlocked():
    config2.final.seeds = (2,)
  two = pipeline.run(config2, workdir)["results"][0]
  for m in ("searched", "mbv2"):
    accs = two[m]["test_acc_per_seed"]
    assert len(accs) == 2 and accs[0] == res[m]["test_acc"]
    assert abs(two[m]["test_acc"] - (accs[0] + accs[1]) / 2) < 1e-12
  assert os.path.exists(os.path.join(workdir, "final_searched_sram24k-flash160k_seed1.json"))
  assert "(2 seeds)" in open(os.path.join(workdir, "results.md")).read()


def test_final_seeds_one_count_per_budget():
  c = mcunet_config.get_config("cpu")
  assert pipeline.final_seeds(c) == [3, 1]
  with c.unlocked():
    c.final.seeds = (3,)
  with pytest.raises(ValueError, match="one count >= 1 per budget"):
    pipeline.final_seeds(c)
  with c.unlocked():
    c.final.seeds = (2, 0)
  with pytest.raises(ValueError, match=r"final.seeds=\(2, 0\)"):
    pipeline.final_seeds(c)


_TWO_DEVICE_SCRIPT = r"""
import json
import jax
import numpy as np
import pytest
assert jax.device_count() == 2, jax.devices()
from jaxtiny.tinynas import space as space_lib
from jaxtiny.tinynas import train as train_lib
sp = space_lib.SearchSpace(0.2, 24, kernels=(3, 5), expands=(2, 3),
                           depths=(1, 2))
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
y = rng.integers(0, 10, 64).astype(np.int32)
out = {}
for n in (1, 2):
  t = train_lib.SupernetTrainer.create(
      sp, train_lib.Recipe(batch_size=16, learning_rate=0.005, warmup_steps=1,
                           num_devices=n), 0)
  losses = []
  t.train_phase("expand", x, y, 4, np.random.default_rng(1),
                on_step=lambda i, m: losses.append(float(m["loss"])))
  shards = len(t.params["classifier"]["w"].sharding.device_set)
  out[n] = {"loss": losses, "devices": shards}
print("RESULT" + json.dumps(out))
"""


def test_supernet_training_on_two_devices_matches_one(tmp_path):
  proc = helpers.run_python(
      ["-c", _TWO_DEVICE_SCRIPT],
      env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][0]
  out = json.loads(line[len("RESULT"):])
  assert out["1"]["devices"] == 1 and out["2"]["devices"] == 2
  # Same global batch statistics and gradients, only the reduction order
  # differs (a small learning rate keeps the difference from growing).
  np.testing.assert_allclose(out["2"]["loss"], out["1"]["loss"], rtol=1e-4,
                             atol=1e-5)
