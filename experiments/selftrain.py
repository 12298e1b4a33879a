"""Self-training under domain shift: linear theory toys, Colored MNIST, CelebA.

  python -m experiments.selftrain --config=experiments/configs/selftrain.py:toy \
      --workdir=runs/selftrain_toy [--config.seeds=10]
"""

from experiments import _main
from jaxtiny.selftrain import celeba_experiment
from jaxtiny.selftrain import cmnist
from jaxtiny.selftrain import toy_experiment


def train_and_evaluate(config, workdir):
  if config.kind == "toy":
    return toy_experiment.run(config, workdir)
  if config.kind == "cmnist":
    return cmnist.run(config, workdir)
  if config.kind == "celeba":
    return celeba_experiment.run(config, workdir)
  raise ValueError(f"config kind {config.kind!r} is not implemented")


if __name__ == "__main__":
  _main.run(train_and_evaluate)
