"""The training state pytree and key-stream helpers."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import optax


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
  """Immutable training state; steps return a new one.

  Attributes:
    step: number of optimizer updates applied (int32 scalar array).
    params: model parameters.
    opt_state: optimizer state of `tx`.
    model_state: non-trained model variables (e.g. batch statistics, spectral
      norm vectors); an empty dict when the model has none.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any

  def apply_gradients(self, tx: optax.GradientTransformation, grads: Any,
                      **kwargs) -> "TrainState":
    """Returns the state after one `tx` update with `grads`."""
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state,
                        **kwargs)

  def replace(self, **kwargs) -> "TrainState":
    return dataclasses.replace(self, **kwargs)


def create_train_state(params: Any, tx: optax.GradientTransformation,
                       model_state: Any = None) -> TrainState:
  """Returns step-0 state for `params` optimised by `tx`."""
  return TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                    opt_state=tx.init(params),
                    model_state={} if model_state is None else model_state)


def split_streams(key: jax.Array, names: Sequence[str]) -> dict[str, jax.Array]:
  """Splits `key` into independent named streams (e.g. init, data, loop).

  The caller should drop `key` afterwards and use only the streams.
  """
  return dict(zip(names, jax.random.split(key, len(names))))
