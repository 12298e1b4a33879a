"""Saving and loading the trained reference classifier by dataset name.

Evaluation code (Inception Score, FID on LeNet features, CNN accuracy) finds
the classifier of a dataset at `<data dir>/classifiers/<dataset>.npz`, written
by `python -m experiments.classifier --config=experiments/configs/classifier.py:<dataset>`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtiny import data
from jaxtiny.nn import LeNet
from jaxtiny.train import checkpoint


def default_path(dataset: str, data_dir: Optional[str] = None) -> str:
  return os.path.join(data.data_dir(data_dir), "classifiers", f"{dataset}.npz")


def make_meta(config: ml_collections.ConfigDict, num_classes: int, mean: float,
              std: float, result: dict) -> dict:
  return {"dataset": config.dataset, "num_classes": num_classes,
          "conv_features": list(config.model.conv_features),
          "hidden": config.model.hidden, "dropout": config.model.dropout,
          "mean": mean, "std": std, "result": result}


def save(path: str, params: Any, meta: dict) -> str:
  checkpoint.save_tree(path, params, meta)
  return path


@dataclasses.dataclass(frozen=True)
class ReferenceClassifier:
  """A trained LeNet with its input normalisation.

  Inputs are images in [0, 1] as float [N, 28, 28(, 1)], or uint8 in [0, 255].
  """
  model: LeNet
  params: Any
  mean: float
  std: float
  meta: dict

  def _normalise(self, images) -> jax.Array:
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
      images = images.astype(jnp.float32) / 255.0
    if images.ndim == 3:
      images = images[..., None]
    return (images.astype(jnp.float32) - self.mean) / self.std

  def logits(self, images) -> jax.Array:
    return self.model.apply(self.params, self._normalise(images))

  def logits_and_features(self, images) -> tuple[jax.Array, jax.Array]:
    """Returns logits [N, classes] and penultimate features [N, hidden]."""
    return self.model.apply(self.params, self._normalise(images),
                            return_features=True)


def train_command(dataset: str) -> str:
  """The command that trains the reference classifier of `dataset`."""
  return (f"python -m experiments.classifier "
          f"--config=experiments/configs/classifier.py:{dataset} --workdir=runs/classifier_{dataset}")


def load(dataset: str, data_dir: Optional[str] = None,
         path: Optional[str] = None) -> ReferenceClassifier:
  """Loads the reference classifier of `dataset`.

  Raises:
    FileNotFoundError: it has not been trained yet (the message names the
      command that trains it).
  """
  path = path or default_path(dataset, data_dir)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"No reference classifier for {dataset!r} at {path}. Train it with:\n"
        f"  {train_command(dataset)}")
  meta = checkpoint.read_meta(path)
  model = LeNet(num_classes=meta["num_classes"],
                conv_features=tuple(meta["conv_features"]),
                hidden=meta["hidden"], dropout=meta["dropout"])
  template = jax.eval_shape(model.init, jax.random.key(0),
                            jnp.zeros((1, 28, 28, 1)))
  template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
  params, meta = checkpoint.load_tree(path, template)
  return ReferenceClassifier(model, params, meta["mean"], meta["std"], meta)
