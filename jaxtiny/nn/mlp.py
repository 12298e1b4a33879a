"""A plain MLP (flax, used through init/apply only)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Flatten -> [Dense -> ReLU] * len(hidden) -> Dense(num_classes)."""
  hidden: Sequence[int] = (128, 64)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)
