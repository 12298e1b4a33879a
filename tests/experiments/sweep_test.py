"""experiments.sweep: commands from get_sweep(), skipping finished points."""

import json

import pytest

from helpers import require_prepared, run_python

CONFIG = "experiments/configs/gswgan.py"


def test_print_lists_one_command_per_point(tmp_path):
  out = run_python(["-m", "experiments.sweep", f"--config={CONFIG}:mnist",
                    f"--workdir={tmp_path}", "--print"])
  lines = out.stdout.strip().splitlines()
  assert len(lines) == 15  # 5 target epsilons x 3 seeds.
  assert lines[0] == (f"python -m experiments.gswgan --config={CONFIG}:mnist "
                      f"--workdir={tmp_path}/target_epsilon-1.0_calibrate-true_seed-0 "
                      "--config.dp.target_epsilon=1.0 --config.dp.calibrate=true "
                      "--config.seed=0")


def test_finished_points_are_skipped(tmp_path):
  for name in ("noise_multiplier-0.5", "noise_multiplier-1.0"):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps({"steps": 6}))
  out = run_python(["-m", "experiments.sweep", f"--config={CONFIG}:smoke",
                    f"--workdir={tmp_path}"])
  assert "2 points, 2 finished, 0 to run" in out.stdout


def test_config_without_sweep_is_refused(tmp_path):
  out = run_python(["-m", "experiments.sweep",
                    "--config=experiments/configs/classifier.py:mnist",
                    f"--workdir={tmp_path}"], check=False)
  assert out.returncode != 0 and "defines no get_sweep()" in out.stderr


@pytest.mark.slow
def test_smoke_sweep_runs_every_point(tmp_path):
  require_prepared("mnist")
  out = run_python(["-m", "experiments.sweep", f"--config={CONFIG}:smoke",
                    f"--workdir={tmp_path}"], timeout=1800)
  assert "2 points, 0 finished, 2 to run" in out.stdout
  for name, sigma in (("noise_multiplier-0.5", 0.5), ("noise_multiplier-1.0", 1.0)):
    ledger = json.loads((tmp_path / name / "privacy.json").read_text())
    assert ledger["noise_multiplier"] == sigma and (tmp_path / name / "gen_data.npz").exists()
