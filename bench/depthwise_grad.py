"""Depthwise convolution gradient on CPU: XLA's grouped convolution against
`jaxtiny.nn.conv.depthwise_conv2d` with the filter gradient in one pass and
in cache-sized batch chunks (the default), in one run.

Layer shapes are those of the TinyNAS `cpu` run's searched networks at batch
64 (NHWC input, k x k filters, stride). Each cell is forward + backward (input
and filter gradients) in ms, best of `--repeat`.

  python -m bench.depthwise_grad [--batch=64] [--repeat=5]
"""

import argparse
import time

import jax
import jax.numpy as jnp

from jaxtiny.nn import conv as conv_lib
from jaxtiny.tinynas import model

SHAPES = ((32, 32, 7, 2), (16, 64, 7, 1), (16, 96, 3, 2), (8, 120, 5, 1),
          (8, 240, 3, 1), (4, 288, 7, 1))


def _best_ms(fn, args, repeat: int) -> float:
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeat):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t)
  return 1e3 * best


def _grad_fn(dw, stride):
  def loss(x, w):
    return jnp.sum(jnp.sin(dw(x, w, stride)))
  return jax.jit(jax.grad(loss, argnums=(0, 1)))


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--repeat", type=int, default=5)
  a = p.parse_args()
  xla = lambda x, w, s: model.conv(x, w, s, w.shape[-1])  # noqa: E731
  ours = conv_lib.depthwise_conv2d
  chunk_bytes = conv_lib._FILTER_GRAD_CHUNK_BYTES  # pylint: disable=protected-access
  print(f"batch {a.batch}, fwd + bwd ms (best of {a.repeat}); filter-gradient "
        f"chunks of {chunk_bytes // 1024} kB")
  print("| H x W x C, k, stride | XLA grouped conv | ours, one pass | "
        "ours, chunked | chunked vs one pass | chunked vs XLA |")
  print("|---|---|---|---|---|---|")
  for h, c, k, s in SHAPES:
    x = jax.random.normal(jax.random.key(0), (a.batch, h, h, c))
    w = jax.random.normal(jax.random.key(1), (k, k, 1, c))
    t_xla = _best_ms(_grad_fn(xla, s), (x, w), a.repeat)
    conv_lib._FILTER_GRAD_CHUNK_BYTES = 1 << 62  # pylint: disable=protected-access
    t_one = _best_ms(_grad_fn(ours, s), (x, w), a.repeat)
    conv_lib._FILTER_GRAD_CHUNK_BYTES = chunk_bytes  # pylint: disable=protected-access
    t_chunk = _best_ms(_grad_fn(ours, s), (x, w), a.repeat)
    print(f"| {h}x{h}x{c}, {k}, {s} | {t_xla:.1f} | {t_one:.1f} | "
          f"{t_chunk:.1f} | {t_one / t_chunk:.2f}x | {t_xla / t_chunk:.2f}x |")


if __name__ == "__main__":
  main()
