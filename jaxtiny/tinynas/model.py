"""A standalone MobileNetV2/ProxylessNAS network built from an `Arch`.

Pure functions over plain pytrees (no module objects):

  params, state = init(arch, key)
  logits, state = apply(arch, params, state, x, train)

`x` is NHWC float in [0, 1] (or normalised); `state` holds batch-norm running
statistics (PyTorch convention: momentum 0.1, eps 1e-5, biased batch variance
for normalisation). Conv filters are HWIO; depthwise filters [k, k, 1, C].
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtiny.nn import conv as conv_lib
from jaxtiny.tinynas import arch as arch_lib

BN_MOMENTUM = 0.1
BN_EPS = 1e-5
Params = dict[str, Any]


def conv(x: jax.Array, w: jax.Array, stride: int = 1,
         groups: int = 1) -> jax.Array:
  """'Same'-padded (k // 2) NHWC convolution with HWIO filters."""
  k = w.shape[0]
  p = k // 2
  return jax.lax.conv_general_dilated(
      x, w, (stride, stride), ((p, p), (p, p)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def bn_init(c: int) -> tuple[Params, Params]:
  return ({"scale": jnp.ones((c,)), "bias": jnp.zeros((c,))},
          {"mean": jnp.zeros((c,)), "var": jnp.ones((c,))})


def batch_norm(x: jax.Array, p: Params, s: Params, train: bool,
               update_mask: jax.Array | None = None,
               momentum: float | jax.Array = BN_MOMENTUM
               ) -> tuple[jax.Array, Params]:
  """Batch norm over N, H, W. In training, running stats move towards the
  batch's by `momentum` (only where `update_mask` is true, when given)."""
  if train:
    mean = x.mean(axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    new_mean = (1 - momentum) * s["mean"] + momentum * mean
    new_var = (1 - momentum) * s["var"] + momentum * var
    if update_mask is not None:
      new_mean = jnp.where(update_mask, new_mean, s["mean"])
      new_var = jnp.where(update_mask, new_var, s["var"])
    s = {"mean": jax.lax.stop_gradient(new_mean),
         "var": jax.lax.stop_gradient(new_var)}
  else:
    mean, var = s["mean"], s["var"]
  y = (x - mean) * jax.lax.rsqrt(var + BN_EPS) * p["scale"] + p["bias"]
  return y, s


def depthwise(x: jax.Array, w: jax.Array, stride: int = 1) -> jax.Array:
  """Depthwise 'same' convolution, [k, k, 1, C] filters (fast CPU gradient)."""
  return conv_lib.depthwise_conv2d(x, w, stride)


def he_normal(key: jax.Array, shape: tuple[int, ...], fan_out: int
              ) -> jax.Array:
  """Kaiming normal with fan-out, as MobileNet implementations initialise."""
  return jax.random.normal(key, shape) * np.sqrt(2.0 / fan_out)


def init(arch: arch_lib.Arch, key: jax.Array) -> tuple[Params, Params]:
  """Parameters and batch-norm state of `arch`."""
  arch_lib.validate(arch)
  keys = iter(jax.random.split(key, 3 * len(arch.blocks) + 4))
  k = arch.stem_kernel
  params: Params = {"stem": {"w": he_normal(next(keys), (k, k, arch.in_channels,
                                                         arch.stem_channels),
                                            k * k * arch.stem_channels)}}
  state: Params = {}
  params["stem"]["bn"], state["stem"] = bn_init(arch.stem_channels)
  pblocks, sblocks = [], []
  for b in arch.blocks:
    p, s = {}, {}
    if b.has_expand:
      p["expand"] = {"w": he_normal(next(keys), (1, 1, b.in_channels,
                                                 b.mid_channels), b.mid_channels)}
      p["expand"]["bn"], s["expand"] = bn_init(b.mid_channels)
    else:
      next(keys)
    kk = b.kernel_size
    p["dw"] = {"w": he_normal(next(keys), (kk, kk, 1, b.mid_channels), kk * kk)}
    p["dw"]["bn"], s["dw"] = bn_init(b.mid_channels)
    p["project"] = {"w": he_normal(next(keys), (1, 1, b.mid_channels,
                                                b.out_channels), b.out_channels)}
    p["project"]["bn"], s["project"] = bn_init(b.out_channels)
    pblocks.append(p)
    sblocks.append(s)
  params["blocks"], state["blocks"] = pblocks, sblocks
  if arch.mix_channels is not None:
    c = arch.blocks[-1].out_channels if arch.blocks else arch.stem_channels
    params["mix"] = {"w": he_normal(next(keys), (1, 1, c, arch.mix_channels),
                                    arch.mix_channels)}
    params["mix"]["bn"], state["mix"] = bn_init(arch.mix_channels)
  f = arch.feature_channels
  params["classifier"] = {
      "w": jax.random.normal(next(keys), (f, arch.num_classes)) * 0.01,
      "b": jnp.zeros((arch.num_classes,))}
  return params, state


def relu6(x: jax.Array) -> jax.Array:
  return jnp.clip(x, 0.0, 6.0)


def apply(arch: arch_lib.Arch, params: Params, state: Params, x: jax.Array,
          train: bool, bn_momentum: float | jax.Array = BN_MOMENTUM
          ) -> tuple[jax.Array, Params]:
  """Logits [N, classes] and the new state (unchanged unless `train`)."""
  new: Params = {}
  bn = functools.partial(batch_norm, momentum=bn_momentum)
  h, new["stem"] = bn(conv(x, params["stem"]["w"], arch.stem_stride),
                              params["stem"]["bn"], state["stem"], train)
  h = relu6(h)
  new_blocks = []
  for b, p, s in zip(arch.blocks, params["blocks"], state["blocks"]):
    ns = {}
    inp = h
    if b.has_expand:
      h, ns["expand"] = bn(conv(h, p["expand"]["w"]),
                                   p["expand"]["bn"], s["expand"], train)
      h = relu6(h)
    h, ns["dw"] = bn(depthwise(h, p["dw"]["w"], b.stride),
                             p["dw"]["bn"], s["dw"], train)
    h = relu6(h)
    h, ns["project"] = bn(conv(h, p["project"]["w"]),
                                  p["project"]["bn"], s["project"], train)
    if b.shortcut:
      h = h + inp
    new_blocks.append(ns)
  new["blocks"] = new_blocks
  if arch.mix_channels is not None:
    h, new["mix"] = bn(conv(h, params["mix"]["w"]), params["mix"]["bn"],
                               state["mix"], train)
    h = relu6(h)
  h = h.mean(axis=(1, 2))
  logits = h @ params["classifier"]["w"] + params["classifier"]["b"]
  return logits, new
