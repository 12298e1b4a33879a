"""Trains the reference LeNet classifier.

  python -m experiments.classifier --config=experiments/configs/classifier.py:mnist \
      --workdir=runs/classifier_mnist [--config.num_epochs=3 ...]
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from jaxtiny.classifier import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file path[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and metrics go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
