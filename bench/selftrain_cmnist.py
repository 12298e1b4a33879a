"""Colored MNIST seeds: vmapped vs sequential, in one run.

One seed = the paper's pipeline without the pseudo-label variants: colours,
source training (30 epochs of batch 64 on 20,000 images), 300 full-batch
entropy-minimisation steps on 30,000 target images, target-test accuracy.
Targets (issue 6): 5 vmapped seeds at least 2x faster than 5 sequential
seeds, and 5 vmapped seeds faster than the authors' PyTorch script's single
seed (about 80 s on this machine, measured by the issue's author).

  python -m bench.selftrain_cmnist [--seeds=5] [--epochs=30]
"""

import argparse
import time

import jax
import jax.numpy as jnp

from experiments.configs import selftrain as selftrain_config
from jaxtiny.selftrain import cmnist


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--epochs", type=int, default=30)
  p.add_argument("--variant", default="cmnist10_p95")
  a = p.parse_args()
  config = selftrain_config.get_config(a.variant)
  with config.unlocked():
    config.source_epochs = a.epochs
  splits = {k: tuple(jnp.asarray(x) for x in v)
            for k, v in cmnist.load_splits(config.num_classes).items()}

  def one_seed(sp, key):
    st = cmnist._Setup(sp, config)  # pylint: disable=protected-access
    d = st.seed_data(key)
    p_src = st.source(d)
    return st.scores(d, st.self_train(d, p_src, "entropy"))[0]

  single = jax.jit(one_seed)
  batched = jax.jit(jax.vmap(one_seed, in_axes=(None, 0)))
  keys = jax.vmap(jax.random.key)(jnp.arange(a.seeds))

  t = time.perf_counter()
  single.lower(splits, keys[0]).compile()
  batched.lower(splits, keys).compile()
  compile_s = time.perf_counter() - t

  t = time.perf_counter()
  seq_acc = [float(single(splits, k)) for k in keys]
  seq = time.perf_counter() - t
  t = time.perf_counter()
  vm_acc = jax.block_until_ready(batched(splits, keys))
  vm = time.perf_counter() - t

  print(f"| {a.variant}, {a.epochs} source epochs + 300 entropy steps | wall time |")
  print("|---|---|")
  print(f"| 1 seed (mean of the sequential runs) | {seq / a.seeds:.1f} s |")
  print(f"| {a.seeds} seeds sequential | {seq:.1f} s |")
  print(f"| {a.seeds} seeds vmapped | {vm:.1f} s |")
  print(f"| speed-up vmapped / sequential | **{seq / vm:.2f}x** (target >= 2x) |")
  print(f"| compile (both programs, excluded above) | {compile_s:.1f} s |")
  print(f"target accuracy, sequential: {[round(x, 4) for x in seq_acc]}")
  print(f"target accuracy, vmapped:    {[round(float(x), 4) for x in vm_acc]}")


if __name__ == "__main__":
  main()
