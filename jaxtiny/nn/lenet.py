"""The LeNet-style CNN used as the reference classifier for 28x28 datasets.

It scores generators (Inception Score on its logits, FID on its penultimate
features) and is the "CNN accuracy" network of the evaluation suite.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class LeNet(nn.Module):
  """conv5x5-relu-maxpool x len(conv_features), dense-relu (features), dense.

  Attributes:
    num_classes: output logits.
    conv_features: channels of each conv stage.
    hidden: width of the penultimate (feature) layer.
    dropout: dropout rate before the last layer (training only).
  """
  num_classes: int = 10
  conv_features: Sequence[int] = (32, 64)
  hidden: int = 512
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               return_features: bool = False):
    """Args: x [B, H, W, C] normalised images. Returns logits [B, num_classes]
    (and the [B, hidden] features when `return_features`)."""
    for c in self.conv_features:
      x = nn.Conv(c, (5, 5), padding="SAME")(x)
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(nn.Dense(self.hidden)(x))
    h = nn.Dropout(self.dropout, deterministic=not train)(features)
    logits = nn.Dense(self.num_classes)(h)
    if return_features:
      return logits, features
    return logits


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels. Returns [B]."""
  logp = jax.nn.log_softmax(logits)
  return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
