"""Weight-shared elastic supernet of a `SearchSpace` (once-for-all style).

Every block slot of the space holds the largest weights: a depthwise kernel
of the largest size (7x7 in the paper's space), `cin * max(expand)` middle
channels, and one per-layer kernel transformation matrix per smaller size
(25x25 for 7 -> 5, 9x9 for 5 -> 3, identity at init).

  elastic kernel   5x5 = T75 applied to the centre 5x5 of the 7x7 kernel;
                   3x3 = T53 applied to the centre 3x3 of that 5x5
  elastic expand   the first `cin * e` middle channels (sorted by importance
                   with `sort_channels` before the expand phase)
  elastic depth    the first d blocks of each stage
  elastic res.     the input is resized per batch (one compiled program per
                   resolution)

A subnet is passed to the jitted functions as arrays (`encode`), never as a
static argument: smaller kernels are zero-padded to the largest (the same
convolution), unused middle channels are masked to zero, and skipped blocks
select their input. Sampling a new subnet therefore never recompiles; only a
new input resolution does. `extract` turns a subnet into a standalone
`model.py` network with copied weights.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import model
from jaxtiny.tinynas import space as space_lib

Params = dict[str, Any]


def transform_name(big: int, small: int) -> str:
  return f"t{big}{small}"


def slot_channels(space: space_lib.SearchSpace) -> list[tuple[int, int, int]]:
  """(in, out, stride) of every slot: stage-major slots, then the final block."""
  w = space.widths
  dmax = max(space.depths)
  out = []
  cin = w[1]
  for s, stride in enumerate(space_lib.STAGE_STRIDES):
    for j in range(dmax):
      out.append((cin, w[2 + s], stride if j == 0 else 1))
      cin = w[2 + s]
  out.append((cin, w[-1], 1))
  return out


def init(space: space_lib.SearchSpace, key: jax.Array
         ) -> tuple[Params, Params]:
  """Supernet parameters and BN state at the largest size."""
  w = space.widths
  emax = max(space.expands)
  ks = sorted(space.kernels, reverse=True)
  if any(k % 2 == 0 for k in ks):
    raise ValueError(f"kernel sizes must be odd, got {space.kernels}.")
  kmax = ks[0]
  keys = iter(jax.random.split(key, 64 + 3 * len(slot_channels(space))))
  params: Params = {"stem": {"w": model.he_normal(next(keys),
                                                  (3, 3, space.in_channels, w[0]),
                                                  9 * w[0])}}
  state: Params = {}
  params["stem"]["bn"], state["stem"] = model.bn_init(w[0])
  first_p = {"dw": {"w": model.he_normal(next(keys), (3, 3, 1, w[0]), 9)},
             "project": {"w": model.he_normal(next(keys), (1, 1, w[0], w[1]),
                                              w[1])}}
  first_s = {}
  first_p["dw"]["bn"], first_s["dw"] = model.bn_init(w[0])
  first_p["project"]["bn"], first_s["project"] = model.bn_init(w[1])
  params["first"], state["first"] = first_p, first_s
  slots_p, slots_s = [], []
  for cin, cout, _ in slot_channels(space):
    mid = cin * emax
    p = {"expand": {"w": model.he_normal(next(keys), (1, 1, cin, mid), mid)},
         "dw": {"w": model.he_normal(next(keys), (kmax, kmax, 1, mid),
                                     kmax * kmax)},
         "project": {"w": model.he_normal(next(keys), (1, 1, mid, cout), cout)}}
    for big, small in zip(ks[:-1], ks[1:]):
      p[transform_name(big, small)] = jnp.eye(small * small)
    s = {}
    p["expand"]["bn"], s["expand"] = model.bn_init(mid)
    p["dw"]["bn"], s["dw"] = model.bn_init(mid)
    p["project"]["bn"], s["project"] = model.bn_init(cout)
    slots_p.append(p)
    slots_s.append(s)
  params["slots"], state["slots"] = slots_p, slots_s
  params["classifier"] = {
      "w": jax.random.normal(next(keys), (w[-1], space.num_classes)) * 0.01,
      "b": jnp.zeros((space.num_classes,))}
  return params, state


def elastic_kernels(space: space_lib.SearchSpace, p: Params
                    ) -> list[jax.Array]:
  """The depthwise kernels [k, k, 1, C] of one slot, one per size in
  `space.kernels` (ascending): each smaller kernel is the next larger one's
  centre crop passed through the per-layer transformation matrix."""
  ks = sorted(space.kernels, reverse=True)
  kernel = p["dw"]["w"]
  c = kernel.shape[-1]
  out = [kernel]
  for big, small in zip(ks[:-1], ks[1:]):
    o = (big - small) // 2
    centre = kernel[o:o + small, o:o + small].reshape(small * small, c)
    kernel = (p[transform_name(big, small)] @ centre).reshape(small, small, 1, c)
    out.append(kernel)
  return out[::-1]


def _index_of_kernel(space: space_lib.SearchSpace, k: int) -> int:
  return sorted(space.kernels).index(k)


def encode(space: space_lib.SearchSpace, choice: space_lib.SubnetChoice
           ) -> dict[str, jax.Array]:
  """Arrays that select `choice` inside the jitted supernet functions."""
  dmax = max(space.depths)
  active = [i % dmax < choice.depths[i // dmax]
            for i in range(space.max_blocks)]
  active.append(True)
  cins = [c for c, _, _ in slot_channels(space)]
  n = space.max_blocks + 1
  return {"active": jnp.asarray(np.array(active, bool)),
          "kernel": jnp.asarray(np.array(
              [_index_of_kernel(space, choice.kernels[i]) for i in range(n)],
              np.int32)),
          "mid": jnp.asarray(np.array([cins[i] * choice.expands[i]
                                       for i in range(n)], np.int32))}


def apply(space: space_lib.SearchSpace, params: Params, state: Params,
          x: jax.Array, enc: dict[str, jax.Array], train: bool,
          bn_momentum: float | jax.Array = model.BN_MOMENTUM
          ) -> tuple[jax.Array, Params]:
  """Logits of the encoded subnet on `x` (already at the subnet's resolution)."""
  new: Params = {}
  bn = functools.partial(model.batch_norm, momentum=bn_momentum)
  h, new["stem"] = bn(model.conv(x, params["stem"]["w"], 2),
                                    params["stem"]["bn"], state["stem"], train)
  h = model.relu6(h)
  fp, fs = params["first"], state["first"]
  nfs = {}
  h, nfs["dw"] = bn(model.depthwise(h, fp["dw"]["w"]),
                                  fp["dw"]["bn"], fs["dw"], train)
  h = model.relu6(h)
  h, nfs["project"] = bn(model.conv(h, fp["project"]["w"]),
                                       fp["project"]["bn"], fs["project"], train)
  new["first"] = nfs
  dmin = min(space.depths)
  dmax = max(space.depths)
  new_slots = []
  for i, ((cin, cout, stride), p, s) in enumerate(
      zip(slot_channels(space), params["slots"], state["slots"])):
    active = enc["active"][i]
    mid_max = p["expand"]["w"].shape[-1]
    mask = jnp.arange(mid_max) < enc["mid"][i]
    upd = jnp.logical_and(mask, active)
    ns = {}
    inp = h
    y, ns["expand"] = bn(model.conv(h, p["expand"]["w"]),
                                       p["expand"]["bn"], s["expand"], train, upd)
    y = model.relu6(y) * mask
    kernel = jnp.stack(_padded(elastic_kernels(space, p)))[enc["kernel"][i]]
    y, ns["dw"] = bn(model.depthwise(y, kernel, stride),
                                   p["dw"]["bn"], s["dw"], train, upd)
    y = model.relu6(y) * mask
    y, ns["project"] = bn(
        model.conv(y, p["project"]["w"]), p["project"]["bn"], s["project"],
        train, jnp.broadcast_to(active, (cout,)))
    if stride == 1 and cin == cout:
      y = y + inp
    is_final = i == len(params["slots"]) - 1
    if not is_final and i % dmax >= dmin:
      y = jnp.where(active, y, inp)
    h = y
    new_slots.append(ns)
  new["slots"] = new_slots
  h = h.mean(axis=(1, 2))
  logits = h @ params["classifier"]["w"] + params["classifier"]["b"]
  return logits, new


def _padded(ks: list[jax.Array]) -> list[jax.Array]:
  out = []
  kmax = ks[-1].shape[0]
  for k in ks:
    pad = (kmax - k.shape[0]) // 2
    out.append(jnp.pad(k, ((pad, pad), (pad, pad), (0, 0), (0, 0))))
  return out


def extract(space: space_lib.SearchSpace, params: Params, state: Params,
            choice: space_lib.SubnetChoice
            ) -> tuple[arch_lib.Arch, Params, Params]:
  """The standalone network of `choice` with weights copied from the supernet
  (kernel transforms applied, the first middle channels kept)."""
  arch = space_lib.to_arch(space, choice)
  dmax = max(space.depths)
  sp: Params = {"stem": params["stem"]}
  ss: Params = {"stem": state["stem"]}
  bp = [params["first"]]
  bs = [state["first"]]
  slots = [i for i in range(space.max_blocks)
           if i % dmax < choice.depths[i // dmax]] + [space.max_blocks]
  for i, blk in zip(slots, arch.blocks[1:]):
    p, s = params["slots"][i], state["slots"][i]
    mid, k = blk.mid_channels, blk.kernel_size
    kernel = elastic_kernels(space, p)[_index_of_kernel(space, k)]
    cut = lambda t: jax.tree_util.tree_map(lambda a: a[..., :mid], t)
    bp.append({"expand": {"w": p["expand"]["w"][..., :mid],
                          "bn": cut(p["expand"]["bn"])},
               "dw": {"w": kernel[..., :mid], "bn": cut(p["dw"]["bn"])},
               "project": {"w": p["project"]["w"][:, :, :mid, :],
                           "bn": p["project"]["bn"]}})
    bs.append({"expand": cut(s["expand"]), "dw": cut(s["dw"]),
               "project": s["project"]})
  sp["blocks"], ss["blocks"] = bp, bs
  sp["classifier"] = params["classifier"]
  return arch, sp, ss


def sort_channels(params: Params, state: Params) -> tuple[Params, Params]:
  """Reorders every slot's middle channels by importance (L1 norm of their
  projection weights, largest first), so that the first `n` channels are the
  ones elastic expand keeps. The full network's function is unchanged."""
  new_p, new_s = dict(params), dict(state)
  slots_p, slots_s = [], []
  for p, s in zip(params["slots"], state["slots"]):
    importance = jnp.abs(p["project"]["w"]).sum(axis=(0, 1, 3))
    order = jnp.argsort(-importance)
    take = lambda t: jax.tree_util.tree_map(lambda a: a[..., order], t)
    q = dict(p)
    q["expand"] = {"w": p["expand"]["w"][..., order],
                   "bn": take(p["expand"]["bn"])}
    q["dw"] = {"w": p["dw"]["w"][..., order], "bn": take(p["dw"]["bn"])}
    q["project"] = {"w": p["project"]["w"][:, :, order, :],
                    "bn": p["project"]["bn"]}
    slots_p.append(q)
    slots_s.append({"expand": take(s["expand"]), "dw": take(s["dw"]),
                    "project": s["project"]})
  new_p["slots"], new_s["slots"] = slots_p, slots_s
  return new_p, new_s
