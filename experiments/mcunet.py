"""TinyNAS (MCUNet): search-space optimisation, elastic supernet, constrained
evolutionary search, and a scaled MobileNetV2 baseline, on Fashion-MNIST.

  python -m experiments.mcunet --config=experiments/configs/mcunet.py:cpu \
      --workdir=runs/mcunet_cpu [--config.search.generations=8]
"""

from experiments import _main
from jaxtiny.tinynas import pipeline


def train_and_evaluate(config, workdir):
  return pipeline.run(config, workdir)


if __name__ == "__main__":
  _main.run(train_and_evaluate)
