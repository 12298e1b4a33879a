"""Benchmark: one training step of the reference LeNet, JAX vs PyTorch (CPU).

  python -m bench.classifier_step [--batch=128] [--steps=30] [--repeats=3]

Both sides run the same network (conv5x5 32 -> pool -> conv5x5 64 -> pool ->
dense 512 -> dense 10, Adam) on the same random batch in one process, so the
ratio is meaningful on a noisy shared machine; absolute times are not. PyTorch
is only a baseline here (it is not a jaxtiny dependency); if it is not
installed, its column says so.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtiny.nn import LeNet
from jaxtiny.nn import cross_entropy

_BATCH = flags.DEFINE_integer("batch", 128, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats; the best is reported.")


def _best_ms(run_steps, steps: int, repeats: int) -> float:
  run_steps(3)  # Warm-up (compilation, allocator).
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    run_steps(steps)
    best = min(best, (time.perf_counter() - t) / steps * 1e3)
  return best


def jax_step_ms(x: np.ndarray, y: np.ndarray, steps: int, repeats: int) -> float:
  model = LeNet()
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  tx = optax.adam(1e-3)
  state = [params, tx.init(params)]

  @jax.jit
  def step(params, opt_state, x, y, key):
    def loss_fn(p):
      logits = model.apply(p, x, train=True, rngs={"dropout": key})
      return cross_entropy(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  xj, yj = jnp.asarray(x), jnp.asarray(y)
  key = jax.random.key(1)

  def run(n):
    loss = None
    for i in range(n):
      state[0], state[1], loss = step(state[0], state[1], xj, yj,
                                      jax.random.fold_in(key, i))
    loss.block_until_ready()

  return _best_ms(run, steps, repeats)


def torch_step_ms(x: np.ndarray, y: np.ndarray, steps: int, repeats: int):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None, "not installed"
  torch.manual_seed(0)
  net = torch.nn.Sequential(
      torch.nn.Conv2d(1, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
      torch.nn.Conv2d(32, 64, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
      torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, 512), torch.nn.ReLU(),
      torch.nn.Dropout(0.5), torch.nn.Linear(512, 10))
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  yt = torch.from_numpy(y.astype(np.int64))

  def run(n):
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      loss = torch.nn.functional.cross_entropy(net(xt), yt)
      loss.backward()
      opt.step()

  return _best_ms(run, steps, repeats), f"torch {torch.__version__}, {torch.get_num_threads()} threads"


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  x = rng.normal(size=(_BATCH.value, 28, 28, 1)).astype(np.float32)
  y = rng.integers(0, 10, _BATCH.value).astype(np.int32)
  j = jax_step_ms(x, y, _STEPS.value, _REPEATS.value)
  t, note = torch_step_ms(x, y, _STEPS.value, _REPEATS.value)
  print(f"LeNet train step, batch {_BATCH.value}, best of {_REPEATS.value} x "
        f"{_STEPS.value} steps ({jax.devices()[0].platform}, jax {jax.__version__})")
  print(f"| {'impl':8s} | {'ms/step':>8s} | {'vs torch':>8s} |")
  print(f"|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
  print(f"| {'jax':8s} | {j:8.1f} | {(j / t if t else float('nan')):8.2f} |")
  print(f"| {'torch':8s} | {t if t else float('nan'):8.1f} | {1.0 if t else float('nan'):8.2f} |  {note}")


if __name__ == "__main__":
  app.run(main)
