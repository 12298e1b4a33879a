"""Float32 GEMM throughput of this machine: numpy (its BLAS) and XLA:CPU.

The ceiling against which the Colored MNIST seeds benchmark is read: one
seed's work is mostly [30000, 1568] x [1568, 128] products, and five seeds'
first layers can be one [30000, 1568] x [1568, 640] product. Best of
`--trials` runs of `--repeat` products each; nothing else should run.

  python -m bench.gemm_peak [--trials=3] [--repeat=5]
"""

import argparse

from bench.selftrain_cmnist import gemm_gflops

SHAPES = ((4096, 4096, 4096), (30000, 1568, 128), (30000, 1568, 640))


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--trials", type=int, default=3)
  p.add_argument("--repeat", type=int, default=5)
  args = p.parse_args()
  print("| product | numpy GFLOP/s | XLA GFLOP/s |\n|---|---|---|")
  for n, k, m in SHAPES:
    best_np = max(gemm_gflops(n, k, m, args.repeat, "numpy") for _ in range(args.trials))
    best_xla = max(gemm_gflops(n, k, m, args.repeat) for _ in range(args.trials))
    print(f"| [{n}, {k}] x [{k}, {m}] | {best_np:.0f} | {best_xla:.0f} |", flush=True)


if __name__ == "__main__":
  main()
