"""Colored MNIST seeds: vmapped vs sequential, in one run.

One seed = the paper's pipeline without the pseudo-label variants: colours,
source training (30 epochs of batch 64 on 20,000 images), 300 full-batch
entropy-minimisation steps on 30,000 target images, target-test accuracy.
Targets (issue 6): 5 vmapped seeds at least 2x faster than 5 sequential
seeds, and 5 vmapped seeds faster than one seed of the authors' PyTorch
pipeline. The issue quotes about 80 s for that script "on this machine"; to
compare within one run, the benchmark contains its own PyTorch version of the
same seed (same MLP, SGD settings, 30 epochs of batch 64 with the best epoch
by source validation accuracy, 300 full-batch entropy steps), written here
from the paper's description; torch is a benchmark-only install
(`pip install torch==2.13.0`; `--notorch` or no torch skips it).

It also prints the floating-point work of one seed and what a plain float32
GEMM of the entropy step's shape reaches in the same process, so the reader
sees how close each side is to the machine's bound.

  python -m bench.selftrain_cmnist [--seeds=5] [--epochs=30] [--steps=300] [--notorch]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import selftrain as selftrain_config
from jaxtiny.selftrain import cmnist


def seed_flops(config, sizes) -> float:
  """Multiply-adds x 2 of one seed: source epochs (forward + backward, the
  first layer's input gradient skipped), per-epoch validation forward, the
  entropy steps (forward + backward on the full target set)."""
  dims = (1568, *config.model.hidden, config.num_classes)
  fwd = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
  first = dims[0] * dims[1]
  train = 3 * fwd - first                       # forward, weight and input grads
  n_src = sizes["source_train"] // config.batch_size * config.batch_size
  return 2.0 * (config.source_epochs * (n_src * train + sizes["source_val"] * fwd)
                + config.self_train_steps * sizes["target_train"] * train
                + sizes["target_test"] * fwd)


def gemm_gflops(n: int, k: int, m: int, repeat: int = 5, backend: str = "xla") -> float:
  """Float32 GFLOP/s of one [n, k] x [k, m] product in this process: jitted
  (`backend="xla"`) or numpy's BLAS (`"numpy"`)."""
  rng = np.random.default_rng(0)
  a, b = rng.random((n, k), np.float32), rng.random((k, m), np.float32)
  if backend == "xla":
    a, b = jnp.asarray(a), jnp.asarray(b)
    jitted = jax.jit(jnp.matmul)
    f = lambda: jitted(a, b).block_until_ready()
  elif backend == "numpy":
    f = lambda: a @ b
  else:
    raise ValueError(f"unknown backend {backend!r}; use xla or numpy.")
  f()
  t = time.perf_counter()
  for _ in range(repeat):
    f()
  return 2.0 * n * k * m * repeat / (time.perf_counter() - t) / 1e9


def torch_seed(splits_np, colours, config, seed: int = 0):
  """One seed of the pipeline in PyTorch (CPU): (seconds, target accuracy),
  or None when torch is not installed. Colours are the JAX seed's, so both
  sides train on the same inputs."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from torch import nn  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  torch.manual_seed(seed)

  def inputs(split, name):
    x = splits_np[split][0].reshape(-1, 28, 28, 1)
    c = np.asarray(colours[name], np.float32).reshape(-1, 1, 1, 1)
    return torch.from_numpy(np.concatenate([x * c, x * (1 - c)], -1).reshape(len(x), -1))

  t0 = time.perf_counter()
  xs, xv, xt, xe = (inputs("source_train", "src"), inputs("source_val", "val"),
                    inputs("target_train", "tgt"), inputs("target_test", "test"))
  ys, yv, ye = (torch.from_numpy(splits_np[k][1].astype(np.int64))
                for k in ("source_train", "source_val", "target_test"))
  h1, h2 = config.model.hidden
  model = nn.Sequential(nn.Linear(1568, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(),
                        nn.Linear(h2, config.num_classes))
  o = config.optim

  def sgd():
    return torch.optim.SGD(model.parameters(), lr=o.learning_rate, momentum=o.momentum,
                           weight_decay=o.weight_decay)

  def accuracy(x, y):
    with torch.no_grad():
      return float((model(x).argmax(1) == y).float().mean())

  opt, bs = sgd(), config.batch_size
  best, best_acc = None, -1.0
  for _ in range(config.source_epochs):
    order = torch.randperm(len(xs))[: len(xs) // bs * bs].view(-1, bs)
    for idx in order:
      opt.zero_grad()
      nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
      opt.step()
    acc = accuracy(xv, yv)
    if acc >= best_acc:
      best_acc, best = acc, {k: v.clone() for k, v in model.state_dict().items()}
  model.load_state_dict(best)
  opt = sgd()
  for _ in range(config.self_train_steps):
    opt.zero_grad()
    logp = torch.log_softmax(model(xt), 1)
    (-(logp.exp() * logp).sum(1).mean()).backward()
    opt.step()
  return time.perf_counter() - t0, accuracy(xe, ye)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--epochs", type=int, default=30)
  p.add_argument("--variant", default="cmnist10_p95")
  p.add_argument("--steps", type=int, default=300, help="entropy steps per seed")
  p.add_argument("--notorch", action="store_true", help="skip the PyTorch baseline")
  a = p.parse_args()
  config = selftrain_config.get_config(a.variant)
  with config.unlocked():
    config.source_epochs = a.epochs
    config.self_train_steps = a.steps
  splits_np = cmnist.load_splits(config.num_classes)
  splits = {k: tuple(jnp.asarray(x) for x in v) for k, v in splits_np.items()}
  sizes = {k: len(v[1]) for k, v in splits_np.items()}

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

  torch_run = None
  if not a.notorch:
    setup = cmnist._Setup(splits, config)  # pylint: disable=protected-access
    col = jax.jit(setup.seed_data)(keys[0])["colours"]
    torch_run = torch_seed(splits_np, col, config)
  flops = seed_flops(config, sizes)
  gemm = gemm_gflops(sizes["target_train"], 1568, config.model.hidden[0])
  rate = lambda sec, n=1: flops * n / sec / 1e9  # noqa: E731

  print(f"| {a.variant}, {a.epochs} source epochs + {config.self_train_steps} entropy steps "
        "| wall time | GFLOP/s |")
  print("|---|---|---|")
  print(f"| 1 seed, JAX (mean of the sequential runs) | {seq / a.seeds:.1f} s "
        f"| {rate(seq, a.seeds):.0f} |")
  if torch_run is not None:
    print(f"| 1 seed, PyTorch (same run) | {torch_run[0]:.1f} s | {rate(torch_run[0]):.0f} |")
  print(f"| {a.seeds} seeds sequential | {seq:.1f} s | {rate(seq, a.seeds):.0f} |")
  print(f"| {a.seeds} seeds vmapped | {vm:.1f} s | {rate(vm, a.seeds):.0f} |")
  print(f"| speed-up vmapped / sequential | **{seq / vm:.2f}x** (target >= 2x) | |")
  if torch_run is not None:
    print(f"| {a.seeds} vmapped seeds / 1 PyTorch seed | **{vm / torch_run[0]:.2f}** "
          "(target < 1) | |")
  print(f"| compile (both JAX programs, excluded above) | {compile_s:.1f} s | |")
  print(f"one seed = {flops / 1e12:.2f} TFLOP; a plain float32 GEMM "
        f"[{sizes['target_train']}, 1568] x [1568, {config.model.hidden[0]}] reaches "
        f"{gemm:.0f} GFLOP/s here, so {a.seeds} seeds need at least "
        f"{flops * a.seeds / gemm / 1e9:.0f} s at that rate")
  print(f"target accuracy, sequential: {[round(x, 4) for x in seq_acc]}")
  print(f"target accuracy, vmapped:    {[round(float(x), 4) for x in vm_acc]}")
  if torch_run is not None:
    print(f"target accuracy, PyTorch seed 0 (same colours, its own init and order): "
          f"{torch_run[1]:.4f}")


if __name__ == "__main__":
  main()
