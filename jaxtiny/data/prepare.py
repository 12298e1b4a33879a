"""Prepares datasets in the data directory from offline sources.

Usage:
  python -m jaxtiny.data.prepare [--dataset=mnist|fashion_mnist|all]
      [--data_dir=DIR] [--source_dir=DIR] [--allow_download] [--force]

Without --allow_download nothing touches the network.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from jaxtiny.data import datasets

_DATASET = flags.DEFINE_string(
    "dataset", "all", "Dataset to prepare, or 'all' for every registered one.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Data directory (default $JAXTINY_DATA or ~/.cache/jaxtiny).")
_SOURCE_DIR = flags.DEFINE_string(
    "source_dir", None, "Directory holding the four standard IDX files (gzipped or not).")
_ALLOW_DOWNLOAD = flags.DEFINE_bool(
    "allow_download", False, "Fall back to the official download locations.")
_FORCE = flags.DEFINE_bool("force", False, "Prepare again even if already prepared.")


def main(argv):
  del argv
  names = sorted(datasets.DATASETS) if _DATASET.value == "all" else [_DATASET.value]
  failed = []
  for name in names:
    try:
      datasets.prepare(name, _DATA_DIR.value, _SOURCE_DIR.value,
                       allow_download=_ALLOW_DOWNLOAD.value, force=_FORCE.value)
    except datasets.DatasetError as e:
      print(f"error: {e}", file=sys.stderr)
      failed.append(name)
  if failed:
    sys.exit(f"could not prepare: {', '.join(failed)}")


if __name__ == "__main__":
  app.run(main)
