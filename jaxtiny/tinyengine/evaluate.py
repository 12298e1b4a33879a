"""Int8 deployment check of a trained TinyNAS network on its test set.

  python -m jaxtiny.tinyengine.evaluate --weights=WORKDIR/weights_NAME.npz \
      [--calib=1000] [--method=minmax|percentile] [--limit=0]

Loads the float network (architecture from the weights file), folds batch
norm, calibrates activation ranges on training images, quantizes with TFLite
int8 rules, and reports test accuracy of: the float network, the integer
reference interpreter, and the C kernels (optimised variants, in-place
depthwise), plus whether the C logits equal the reference's bit for bit.
Writes `<weights>.int8.json` (temp file, then rename).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from jaxtiny import data
from jaxtiny import fileio
from jaxtiny.tinyengine import ckernels
from jaxtiny.tinyengine import graph
from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import model
from jaxtiny.tinynas import train as train_lib
from jaxtiny.train import checkpoint


def load_network(path: str):
  """(arch, params, state) from a file written by the TinyNAS pipeline."""
  meta = checkpoint.read_meta(path)
  if "arch" not in meta:
    raise ValueError(f"{path} has no architecture in its metadata; pass a "
                     "weights_*.npz written by `python -m experiments.mcunet`.")
  arch = arch_lib.from_dict(meta["arch"])
  template = model.init(arch, jax.random.key(0))
  (params, state), _ = checkpoint.load_tree(path, template)
  return arch, params, state


def _float_inputs(images: np.ndarray, resolution: int) -> np.ndarray:
  pre = jax.jit(lambda x: train_lib.preprocess(x, resolution))
  return np.concatenate([np.asarray(pre(images[i:i + 500]))
                         for i in range(0, len(images), 500)])


def evaluate(weights: str, dataset: str = "fashion_mnist", calib: int = 1000,
             method: str = "minmax", limit: int = 0, data_dir=None) -> dict:
  arch, params, state = load_network(weights)
  x_train, _ = data.load(dataset, "train", data_dir)
  x_test, y_test = data.load(dataset, "test", data_dir)
  if limit:
    x_test, y_test = x_test[:limit], y_test[:limit]
  y_test = y_test.astype(np.int64)
  r = arch.resolution
  calib_x = _float_inputs(x_train[:calib], r)
  test_x = _float_inputs(x_test, r)

  predict = train_lib.predict_fn(arch)
  float_logits = np.concatenate([np.asarray(predict(params, state,
                                                    x_test[i:i + 500]))
                                 for i in range(0, len(x_test), 500)])
  ops = graph.fold(arch, params, state)
  qp = graph.calibrate(ops, calib_x, method=method)
  g = graph.quantize(ops, qp, (r, r, arch.in_channels))
  xq = graph.quantize_input(g, test_x)
  t = time.time()
  ref_logits = np.concatenate([graph.run(g, xq[i:i + 250])
                               for i in range(0, len(xq), 250)])
  t_ref = time.time() - t
  out = {"weights": os.path.abspath(weights), "dataset": dataset,
         "num_test": int(len(y_test)), "calibration": method,
         "calibration_images": int(calib),
         "float_acc": float((float_logits.argmax(1) == y_test).mean()),
         "int8_reference_acc": float((ref_logits.argmax(1) == y_test).mean()),
         "reference_seconds": t_ref}
  if ckernels.available():
    kernels = ckernels.graph_kernels("inplace")
    t = time.time()
    c_logits = np.concatenate([graph.run(g, xq[i:i + 250], kernels=kernels)
                               for i in range(0, len(xq), 250)])
    out["c_seconds"] = time.time() - t
    out["int8_c_acc"] = float((c_logits.argmax(1) == y_test).mean())
    out["c_equals_reference"] = bool(np.array_equal(c_logits, ref_logits))
  out["int8_drop_points"] = 100 * (out["float_acc"] - out["int8_reference_acc"])
  fileio.atomic_write_json(weights + ".int8.json", out)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m jaxtiny.tinyengine.evaluate",
                              description=__doc__.split("\n")[0])
  p.add_argument("--weights", required=True)
  p.add_argument("--dataset", default="fashion_mnist")
  p.add_argument("--calib", type=int, default=1000)
  p.add_argument("--method", default="minmax", choices=["minmax", "percentile"])
  p.add_argument("--limit", type=int, default=0, help="test images (0: all)")
  a = p.parse_args(argv)
  if not os.path.exists(a.weights):
    print(f"error: {a.weights} does not exist", file=sys.stderr)
    return 2
  out = evaluate(a.weights, a.dataset, a.calib, a.method, a.limit)
  print(json.dumps(out, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
