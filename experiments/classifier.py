"""Trains the reference LeNet classifier.

  python -m experiments.classifier --config=experiments/configs/classifier.py:mnist \
      --workdir=runs/classifier_mnist [--config.num_epochs=3 ...]
"""

from experiments import _main
from jaxtiny.classifier import train

if __name__ == "__main__":
  _main.run(train.train_and_evaluate)
