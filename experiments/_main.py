"""The shared absl entry point: `--config=FILE:variant`, overrides, `--workdir`."""

from typing import Callable

from absl import app
from absl import flags
from ml_collections import config_flags


def run(train_and_evaluate: Callable[..., object]) -> None:
  """Defines --config/--workdir and hands them to `train_and_evaluate`."""
  config = config_flags.DEFINE_config_file("config", None, "Config file path[:variant].")
  workdir = flags.DEFINE_string("workdir", None,
                                "Where checkpoints, metrics and outputs go.")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    train_and_evaluate(config.value, workdir.value)

  app.run(main)
