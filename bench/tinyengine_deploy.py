"""Generated code vs the interpreter baseline, in one run: peak SRAM and
host latency on the four published MCUNet configs (random weights with
calibrated quantization: memory and speed do not depend on the values) and,
with --workdir, on the TinyNAS pipeline's trained Fashion-MNIST models.

Targets (issue 9): generated at least 1.3x faster than the interpreter on
the host; peak SRAM at least 2x smaller on the published configs; planned
peak SRAM at or below TinyEngine's published figures (mcunet-5fps 96 kB,
mcunet-256kb-1mb 215 kB).

  python -m bench.tinyengine_deploy [--workdir=runs/mcunet_cpu] \
      [--images=16] [--out=/tmp/tinyengine_deploy]
"""

import argparse
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxtiny.tinyengine import deploy
from jaxtiny.tinyengine import graph
from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import model

PUBLISHED_KB = {"mcunet-5fps_imagenet": 96, "mcunet-256kb-1mb_imagenet": 215}


def shared_configs() -> list[str]:
  here = os.path.dirname(os.path.abspath(__file__))
  return sorted(glob.glob(os.path.join(here, "..", "..", "shared", "data",
                                       "mcunet", "*.json")))


def random_quantized(arch: arch_lib.Arch, n: int, seed: int = 0):
  """(graph, int8 inputs) of `arch` with random weights, BN statistics from
  a few training-mode passes, and ranges calibrated on random images."""
  params, state = model.init(arch, jax.random.key(seed))
  r, c = arch.resolution, arch.in_channels
  x = np.asarray(jax.random.uniform(jax.random.key(seed + 1),
                                    (32 + n, r, r, c)) * 2 - 1)
  step = jax.jit(lambda s, xb: model.apply(arch, params, s, xb, True)[1])
  for _ in range(2):
    state = step(state, jnp.asarray(x[:16]))
  ops = graph.fold(arch, params, state)
  g = graph.quantize(ops, graph.calibrate(ops, x[:32], batch_size=8), (r, r, c))
  return g, graph.quantize_input(g, x[32:])


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", default="",
                 help="a TinyNAS workdir with weights_searched_*.npz")
  p.add_argument("--images", type=int, default=16)
  p.add_argument("--repeat", type=int, default=3)
  p.add_argument("--out", default="/tmp/tinyengine_deploy")
  a = p.parse_args()
  rows = {}
  for path in shared_configs():
    name = os.path.basename(path)[:-5]
    arch = arch_lib.load(path)
    g, xq = random_quantized(arch, a.images)
    rows[name] = deploy.deploy(arch, g, os.path.join(a.out, name), xq,
                               timing_images=a.images, repeat=a.repeat,
                               sanitize_images=2)
    print(name, json.dumps(rows[name]["latency_us"]), flush=True)
  if a.workdir:
    from jaxtiny import data  # pylint: disable=import-outside-toplevel
    from jaxtiny.tinyengine import evaluate  # pylint: disable=import-outside-toplevel
    from jaxtiny.tinyengine import generate  # pylint: disable=import-outside-toplevel
    x_test, y_test = data.load("fashion_mnist", "test")
    for w in sorted(glob.glob(os.path.join(a.workdir, "weights_*.npz"))):
      name = os.path.basename(w)[len("weights_"):-4]
      if "seed" in name or "finetuned" in name:
        continue
      arch, _, g = generate.quantized_network(w)
      xq = graph.quantize_input(g, evaluate._float_inputs(  # pylint: disable=protected-access
          x_test[:1000], arch.resolution))
      rows[name] = deploy.deploy(arch, g, os.path.join(a.out, name), xq,
                                 labels=y_test[:1000], repeat=a.repeat)
      print(name, json.dumps(rows[name]["latency_us"]), flush=True)
  print()
  print(deploy.markdown_table(rows))
  for name, kb in PUBLISHED_KB.items():
    if name in rows:
      got = rows[name]["peak_sram_bytes"]
      print(f"{name}: planned peak SRAM {got:,} B ({got / 1024:.1f} kB) vs "
            f"TinyEngine's published {kb} kB: "
            f"{'met' if got <= kb * 1024 else 'MISSED'}")
  with open(os.path.join(a.out, "results.json"), "w") as f:
    json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
