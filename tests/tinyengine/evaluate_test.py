"""End to end on Fashion-MNIST: a trained network, quantized, through the
integer reference and the C kernels."""

import json
import os

import numpy as np

from jaxtiny import data
from jaxtiny.tinyengine import ckernels
from jaxtiny.tinyengine import evaluate
from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import space as space_lib
from jaxtiny.tinynas import train as train_lib
from jaxtiny.train import checkpoint
from tests import helpers


def test_trained_network_int8_matches_float_and_c_matches_reference(tmp_path):
  helpers.require_prepared("fashion_mnist")
  sp = space_lib.SearchSpace(0.2, 28, kernels=(3, 5), expands=(3,),
                             depths=(1, 2))
  arch = space_lib.to_arch(sp, space_lib.sample(sp, np.random.default_rng(0)))
  x, y = data.load("fashion_mnist", "train")
  params, state = train_lib.train_arch(
      arch, x[:6000], y[:6000].astype(np.int32), 150,
      train_lib.Recipe(batch_size=64, learning_rate=0.05, warmup_steps=10), 0)
  path = str(tmp_path / "weights_tiny.npz")
  checkpoint.save_tree(path, (params, state), {"arch": arch_lib.to_dict(arch)})
  out = evaluate.evaluate(path, limit=1000, calib=500)
  assert out["float_acc"] > 0.6                 # it learned something
  # Int8 within 2 points of float on 1,000 test images (the full-size
  # measurement is in BUILD_NOTES.md).
  assert abs(out["int8_drop_points"]) <= 2.0
  if ckernels.available() or os.environ.get("CI"):
    assert out["c_equals_reference"] is True
    assert out["int8_c_acc"] == out["int8_reference_acc"]
  with open(path + ".int8.json") as f:
    assert json.load(f) == out
