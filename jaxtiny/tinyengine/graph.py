"""A trained float `Arch` network -> an int8 op graph, and its integer
reference interpreter.

  ops = fold(arch, params, state)                 # BN folded, float
  qp = calibrate(ops, images, method="minmax")    # activation ranges
  g = quantize(ops, qp)                           # int8 graph (TFLite rules)
  logits_q = run(g, quantize_input(g, x))         # int8, integer only

Tensors are named "input", "stem", "b{i}.expand", "b{i}.dw", "b{i}.project",
"b{i}.add", "mix", "pool", "logits". Ops run in list order; each reads
earlier tensors by name. The global average pool keeps its input's
quantization (TFLite requires it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxtiny.tinyengine import quant
from jaxtiny.tinyengine import reference
from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import model as model_lib

CONV, DEPTHWISE, FC, AVGPOOL, ADD = ("conv", "depthwise", "fc", "avgpool",
                                     "add")


@dataclasses.dataclass
class FloatOp:
  """One op with BN folded: conv weights OHWI, depthwise [kh, kw, C],
  fc [O, I]; `relu6` fuses the activation."""
  kind: str
  inputs: tuple[str, ...]
  output: str
  w: np.ndarray | None = None
  b: np.ndarray | None = None
  stride: int = 1
  relu6: bool = False


def fold(arch: arch_lib.Arch, params: dict, state: dict,
         eps: float = model_lib.BN_EPS) -> list[FloatOp]:
  """The float op list of a `tinynas.model` network with BN folded."""
  ops = []

  def conv_op(p, s, src, dst, stride, relu6):
    w, b = quant.fold_bn(np.asarray(p["w"]), p["bn"], s, eps)   # HWIO
    ops.append(FloatOp(CONV, (src,), dst, np.transpose(w, (3, 0, 1, 2)), b,
                       stride, relu6))

  conv_op(params["stem"], state["stem"], "input", "stem", arch.stem_stride, True)
  cur = "stem"
  for i, (blk, p, s) in enumerate(zip(arch.blocks, params["blocks"],
                                      state["blocks"])):
    inp = cur
    if blk.has_expand:
      conv_op(p["expand"], s["expand"], cur, f"b{i}.expand", 1, True)
      cur = f"b{i}.expand"
    w, b = quant.fold_bn(np.asarray(p["dw"]["w"]), p["dw"]["bn"], s["dw"], eps)
    ops.append(FloatOp(DEPTHWISE, (cur,), f"b{i}.dw", w[:, :, 0, :], b,
                       blk.stride, True))
    conv_op(p["project"], s["project"], f"b{i}.dw", f"b{i}.project", 1, False)
    cur = f"b{i}.project"
    if blk.shortcut:
      ops.append(FloatOp(ADD, (cur, inp), f"b{i}.add"))
      cur = f"b{i}.add"
  if arch.mix_channels is not None:
    conv_op(params["mix"], state["mix"], cur, "mix", 1, True)
    cur = "mix"
  ops.append(FloatOp(AVGPOOL, (cur,), "pool"))
  ops.append(FloatOp(FC, ("pool",), "logits",
                     np.asarray(params["classifier"]["w"], np.float64).T,
                     np.asarray(params["classifier"]["b"], np.float64)))
  return ops


def _float_op(op: FloatOp, env: dict) -> jax.Array:
  x = env[op.inputs[0]]
  if op.kind == CONV:
    w = jnp.asarray(np.transpose(op.w, (1, 2, 3, 0)), jnp.float32)
    y = model_lib.conv(x, w, op.stride) + jnp.asarray(op.b, jnp.float32)
  elif op.kind == DEPTHWISE:
    w = jnp.asarray(op.w[:, :, None, :], jnp.float32)
    y = model_lib.conv(x, w, op.stride, w.shape[-1]) + jnp.asarray(op.b,
                                                                  jnp.float32)
  elif op.kind == ADD:
    y = x + env[op.inputs[1]]
  elif op.kind == AVGPOOL:
    y = x.mean(axis=(1, 2))
  elif op.kind == FC:
    y = x @ jnp.asarray(op.w.T, jnp.float32) + jnp.asarray(op.b, jnp.float32)
  else:
    raise ValueError(f"unknown op kind {op.kind!r}")
  return jnp.clip(y, 0.0, 6.0) if op.relu6 else y


def float_forward(ops: Sequence[FloatOp], x: jax.Array) -> dict[str, jax.Array]:
  """Every tensor of the folded float graph on input x [N, R, R, C]."""
  env = {"input": x}
  for op in ops:
    env[op.output] = _float_op(op, env)
  return env


def calibrate(ops: Sequence[FloatOp], inputs: np.ndarray,
              method: str = "minmax", percentile: float = 99.99,
              batch_size: int = 256) -> dict[str, quant.QParams]:
  """Activation quantization parameters from float inputs [N, R, R, C].

  `minmax`: the observed range; `percentile`: the [100 - p, p] percentiles
  of each tensor (robust to outliers). Ranges are widened to contain 0.
  """
  if method not in ("minmax", "percentile"):
    raise ValueError(f"calibration method must be 'minmax' or 'percentile', "
                     f"got {method!r}.")
  run = jax.jit(lambda x: float_forward(ops, x))
  lo: dict[str, list] = {}
  hi: dict[str, list] = {}
  for i in range(0, len(inputs), batch_size):
    env = run(jnp.asarray(inputs[i:i + batch_size], jnp.float32))
    for name, t in env.items():
      t = np.asarray(t)
      if method == "minmax":
        lo.setdefault(name, []).append(t.min())
        hi.setdefault(name, []).append(t.max())
      else:
        lo.setdefault(name, []).append(np.percentile(t, 100 - percentile))
        hi.setdefault(name, []).append(np.percentile(t, percentile))
  agg_lo = min if method == "minmax" else np.mean
  agg_hi = max if method == "minmax" else np.mean
  qp = {name: quant.activation_qparams(float(agg_lo(lo[name])),
                                       float(agg_hi(hi[name])))
        for name in lo}
  for op in ops:                    # Average pooling keeps its input's params.
    if op.kind == AVGPOOL:
      qp[op.output] = qp[op.inputs[0]]
  return qp


@dataclasses.dataclass
class QOp:
  """One int8 op with everything its kernel needs."""
  kind: str
  inputs: tuple[str, ...]
  output: str
  args: dict[str, Any]


@dataclasses.dataclass
class QGraph:
  ops: list[QOp]
  qparams: dict[str, quant.QParams]
  input_shape: tuple[int, ...]             # [R, R, C]


def quantize(ops: Sequence[FloatOp], qparams: dict[str, quant.QParams],
             input_shape: Sequence[int]) -> QGraph:
  """The int8 graph: per-channel symmetric weights, int32 biases, Q31
  multipliers and shifts, fused ReLU6 clamp ranges."""
  qops = []
  for op in ops:
    qin = qparams[op.inputs[0]]
    qout = qparams[op.output]
    act = quant.relu6_range(qout) if op.relu6 else (-128, 127)
    if op.kind in (CONV, DEPTHWISE, FC):
      w_q, s_w = quant.quantize_weights(op.w, 0 if op.kind != DEPTHWISE else -1)
      bias = quant.quantize_bias(op.b, qin.scale, s_w)
      m0, shift = quant.quantize_multipliers(qin.scale * s_w / qout.scale)
      args = {"w": np.ascontiguousarray(w_q), "bias": bias, "m0": m0,
              "shift": shift,
              "zp_in": qin.zero_point, "zp_out": qout.zero_point,
              "act_min": act[0], "act_max": act[1]}
      if op.kind != FC:
        k = op.w.shape[1] if op.kind == CONV else op.w.shape[0]
        args.update(stride=op.stride, pad=reference.same_padding(k))
    elif op.kind == ADD:
      qb = qparams[op.inputs[1]]
      args = {"zp_a": qin.zero_point, "zp_b": qb.zero_point,
              "zp_out": qout.zero_point, "act_min": -128, "act_max": 127,
              **reference.add_params(qin.scale, qb.scale, qout.scale)}
    elif op.kind == AVGPOOL:
      args = {"act_min": -128, "act_max": 127}
    else:
      raise ValueError(f"unknown op kind {op.kind!r}")
    qops.append(QOp(op.kind, op.inputs, op.output, args))
  return QGraph(qops, dict(qparams), tuple(int(s) for s in input_shape))


KERNELS: dict[str, Callable] = {
    CONV: lambda x, a: reference.conv(x, **a),
    DEPTHWISE: lambda x, a: reference.depthwise_conv(x, **a),
    FC: lambda x, a: reference.fully_connected(x, **a),
    AVGPOOL: lambda x, a: reference.global_avgpool(x, **a),
}


def run(g: QGraph, x_q: np.ndarray, kernels: dict[str, Callable] | None = None,
        keep: bool = False) -> np.ndarray | dict[str, np.ndarray]:
  """Runs the int8 graph on int8 input [N, R, R, C]: the int8 logits (or every
  tensor with `keep`). `kernels` overrides the reference kernels per op kind
  (the C kernels plug in here)."""
  impl = dict(KERNELS)
  impl.update(kernels or {})
  if tuple(x_q.shape[1:]) != g.input_shape or x_q.dtype != np.int8:
    raise ValueError(f"input must be int8 [N, {', '.join(map(str, g.input_shape))}]"
                     f", got {x_q.dtype} {tuple(x_q.shape)}.")
  env = {"input": x_q}
  for op in g.ops:
    if op.kind == ADD:
      a = dict(op.args)
      env[op.output] = (impl[ADD](env[op.inputs[0]], env[op.inputs[1]], a)
                        if ADD in impl else
                        reference.add(env[op.inputs[0]], env[op.inputs[1]], **a))
    else:
      env[op.output] = impl[op.kind](env[op.inputs[0]], op.args)
  return env if keep else env["logits"]


def quantize_input(g: QGraph, x: np.ndarray) -> np.ndarray:
  return quant.quantize(x, g.qparams["input"])


def dequantize_logits(g: QGraph, q: np.ndarray) -> np.ndarray:
  return quant.dequantize(q, g.qparams["logits"])
