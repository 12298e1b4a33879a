"""Trains a GS-WGAN differentially private generator.

  python -m experiments.gswgan --config=experiments/configs/gswgan.py:cpu \
      --workdir=runs/gswgan_cpu [--config.dp.noise_multiplier=1.2 ...]
"""

from experiments import _main
from jaxtiny.gswgan import train

if __name__ == "__main__":
  _main.run(train.train_and_evaluate)
