"""Supernet training step vs training the largest subnet alone, in one run.

Target (issue 7): a supernet step (a random subnet of the space, with the
distillation teacher's forward pass) costs at most 2x a training step of the
space's largest subnet as a standalone network. Also shown: the supernet step
without distillation, the smallest subnet alone, and how many programs the
supernet step compiled while the subnets changed every step.

  python -m bench.tinynas_supernet [--width=0.3] [--resolution=64] [--batch=128]
"""

import argparse
import time

import jax
import numpy as np

from jaxtiny.tinynas import profile as profile_lib
from jaxtiny.tinynas import space as space_lib
from jaxtiny.tinynas import train as train_lib


def _time(fn, steps: int, warmup: int = 2) -> float:
  fn(warmup)
  t = time.perf_counter()
  fn(steps)
  return (time.perf_counter() - t) / steps


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--width", type=float, default=0.3)
  p.add_argument("--resolution", type=int, default=64)
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--steps", type=int, default=10)
  a = p.parse_args()
  sp = space_lib.SearchSpace(a.width, a.resolution)
  rng = np.random.default_rng(0)
  n = a.batch * (a.steps + 4)
  x = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
  y = rng.integers(0, 10, n).astype(np.int32)
  recipe = train_lib.Recipe(batch_size=a.batch, warmup_steps=1)

  rows = []
  for name, choice in (("largest subnet alone", space_lib.largest(sp)),
                       ("smallest subnet alone", space_lib.smallest(sp))):
    arch = space_lib.to_arch(sp, choice)
    state = {}

    def run(k, arch=arch, state=state):
      state["p"], state["s"] = train_lib.train_arch(
          arch, x[:a.batch * k], y[:a.batch * k], k, recipe, 0,
          params=state.get("p"), state=state.get("s"))
      jax.block_until_ready(state["p"])
    rows.append((name, _time(run, a.steps),
                 profile_lib.profile(arch)["macs"] / 1e6))

  trainer = train_lib.SupernetTrainer.create(sp, recipe, seed=0)
  trainer.freeze_teacher()
  for name, phase, kd in (("supernet, random subnet + KD teacher", "expand", True),
                          ("supernet, random subnet, no KD", "expand", False)):
    teacher = trainer.teacher
    if not kd:
      trainer.teacher = None

    def run(k, phase=phase):
      trainer.train_phase(phase, x, y, k, rng)
      jax.block_until_ready(trainer.params)
    rows.append((name, _time(run, a.steps), float("nan")))
    trainer.teacher = teacher
  largest = rows[0][1]
  print(f"space {sp.name} (kernels {sp.kernels}, expands {sp.expands}, depths "
        f"{sp.depths}), batch {a.batch}, {a.steps} timed steps each")
  print("| step | ms/step | x largest alone | MMACs/image |")
  print("|---|---|---|---|")
  for name, t, macs in rows:
    mm = "" if np.isnan(macs) else f"{macs:.2f}"
    print(f"| {name} | {1e3 * t:.0f} | {t / largest:.2f} | {mm} |")
  print(f"supernet programs compiled: {trainer.step_cache_size()} "
        "(one per (resolution, distillation) combination)")
  ratio = rows[2][1] / largest
  print(f"target: supernet step <= 2x largest subnet: {ratio:.2f}x -> "
        f"{'met' if ratio <= 2 else 'MISSED'}")


if __name__ == "__main__":
  main()
