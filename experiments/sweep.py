"""Runs every point of a config's sweep, each in its own sub-workdir.

  python -m experiments.sweep --config=experiments/configs/gswgan.py:cpu \
      --workdir=runs/curve [--print] [--devices=N]

The config file's `get_sweep(variant)` returns a list of override dicts
(e.g. {"dp.target_epsilon": 5.0, "seed": 1}); point i runs as

  python -m experiments.<config file name> --config=FILE:VARIANT \
      --workdir=WORKDIR/<overrides> --config.<key>=<value> ...

Finished points (results.json present) are skipped; unfinished ones resume
(each experiment resumes from its workdir). With several accelerators
(--devices, default: the number of NVIDIA GPUs, else 1) points run
concurrently, one per device (CUDA_VISIBLE_DEVICES). --print only prints the
commands, e.g. for a cluster scheduler. Then:

  python -m experiments.evaluate --table WORKDIR
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags

_CONFIG = flags.DEFINE_string("config", None, "Config file path[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the sweep's sub-workdirs.")
_PRINT = flags.DEFINE_bool("print", False, "Only print the commands.")
_DEVICES = flags.DEFINE_integer("devices", 0, "Concurrent points (0: NVIDIA GPU count, else 1).")


def _value(v) -> str:
  return str(v).lower() if isinstance(v, bool) else str(v)


def point_name(overrides: dict) -> str:
  """A readable, filesystem-safe sub-workdir name for one point."""
  parts = [f"{k.split('.')[-1]}-{_value(v)}" for k, v in overrides.items()]
  return "_".join(parts).replace("/", "-") or "default"


def load_sweep(config_arg: str) -> tuple[str, str, list[dict]]:
  path, _, variant = config_arg.partition(":")
  if not os.path.isfile(path):
    raise app.UsageError(f"--config={config_arg}: no file {path}.")
  spec = importlib.util.spec_from_file_location("_sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise app.UsageError(f"{path} defines no get_sweep(); nothing to sweep.")
  points = module.get_sweep(variant) if variant else module.get_sweep()
  if not points:
    raise app.UsageError(f"{path}: get_sweep({variant!r}) returned no points.")
  return path, variant, list(points)


def commands(config_arg: str, workdir: str) -> list[tuple[str, list[str]]]:
  """(sub-workdir, argv) for every point of the sweep."""
  path, variant, points = load_sweep(config_arg)
  module = "experiments." + os.path.splitext(os.path.basename(path))[0]
  names = [point_name(p) for p in points]
  if len(set(names)) != len(names):
    raise app.UsageError(f"{path}: get_sweep() has duplicate points: {names}.")
  out = []
  for name, overrides in zip(names, points):
    sub = os.path.join(workdir, name)
    argv = [sys.executable, "-m", module, f"--config={path}" + (f":{variant}" if variant else ""),
            f"--workdir={sub}"] + [f"--config.{k}={_value(v)}" for k, v in overrides.items()]
    out.append((sub, argv))
  return out


def _gpu_count() -> int:
  if shutil.which("nvidia-smi") is None:
    return 0
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return 0
  return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if not _CONFIG.value or not _WORKDIR.value:
    raise app.UsageError("--config and --workdir are required.")
  points = commands(_CONFIG.value, _WORKDIR.value)
  if _PRINT.value:
    for _, cmd in points:
      print(shlex.join(["python"] + cmd[1:]))
    return
  todo = [(sub, cmd) for sub, cmd in points
          if not os.path.exists(os.path.join(sub, "results.json"))]
  print(f"sweep: {len(points)} points, {len(points) - len(todo)} finished, "
        f"{len(todo)} to run", flush=True)
  n_dev = _DEVICES.value or max(1, _gpu_count())
  running: dict[int, tuple[subprocess.Popen, str]] = {}
  failed = []
  os.makedirs(_WORKDIR.value, exist_ok=True)
  while todo or running:
    for dev in range(n_dev):
      if dev not in running and todo:
        sub, cmd = todo.pop(0)
        env = dict(os.environ)
        if n_dev > 1:
          env["CUDA_VISIBLE_DEVICES"] = str(dev)
        os.makedirs(sub, exist_ok=True)
        log = open(os.path.join(sub, "sweep.log"), "a")
        print(f"[device {dev}] {shlex.join(cmd)}", flush=True)
        running[dev] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT),
                        sub)
        log.close()
    time.sleep(0.5)
    for dev, (proc, sub) in list(running.items()):
      if proc.poll() is not None:
        del running[dev]
        status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
        print(f"[device {dev}] {status}: {sub} (log: {os.path.join(sub, 'sweep.log')})",
              flush=True)
        if proc.returncode:
          failed.append(sub)
  if failed:
    sys.exit(f"{len(failed)} point(s) failed: {failed}; rerun the same command to retry.")
  print(f"sweep finished. Score it: python -m experiments.evaluate --table {_WORKDIR.value}")


if __name__ == "__main__":
  app.run(main)
