"""Trains a GS-WGAN differentially private generator.

  python -m experiments.gswgan --config=experiments/configs/gswgan.py:cpu \
      --workdir=runs/gswgan_cpu [--config.dp.noise_multiplier=1.2 ...]
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from jaxtiny.gswgan import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file path[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, samples and the ledger go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
