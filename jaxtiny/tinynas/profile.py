"""Cost profile of an `Arch`: MACs, parameters, activation memory, flash.

    python -m jaxtiny.tinynas.profile ARCH.json [--json] [--layers]

All activation figures assume int8 activations (1 byte per element).

  macs                multiply-accumulates of the convolutions and the linear
                      layer (BN and activations excluded)
  params              every weight, including BN scale and shift and the
                      classifier bias
  peak_activation_bytes
                      the MCUNet reference rule: the maximum over ops of the
                      bytes alive. Stem, feature-mix and classifier cost input
                      + output. In a block with input x, expanded e, depthwise
                      output d and block output o: expand x + e, depthwise
                      e + d (+ x with a shortcut), projection d + o (e = x when
                      the expand ratio is 1).
  peak_activation_inplace_bytes
                      the same with an in-place depthwise: max(e, d) + one input
                      channel plane (H*W) (+ x with a shortcut); the projection
                      keeps x alive for the residual add: d + o (+ x).
  flash_bytes         int8 weights plus, per output channel of every conv and
                      linear layer, a 4-byte bias, multiplier and shift (BN
                      folded into the conv).
  sram_bytes          peak SRAM of the TinyEngine memory plan
                      (`jaxtiny.tinyengine.schedule`): one arena with in-place
                      depthwise and residual adds, input and logits included,
                      plus the shared im2col / depthwise scratch buffer.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from jaxtiny.tinyengine import schedule
from jaxtiny.tinynas import arch as arch_lib

# Per output channel after BN folding: int32 bias, int32 multiplier, int32 shift.
PER_CHANNEL_BYTES = 12
KEYS = ("macs", "params", "peak_activation_bytes",
        "peak_activation_inplace_bytes", "flash_bytes", "sram_bytes")


@dataclasses.dataclass(frozen=True)
class Op:
  """One layer's costs. `weights` counts conv/linear weights only."""
  name: str
  macs: int
  weights: int
  bn_or_bias: int
  out_channels: int
  act_bytes: int
  act_inplace_bytes: int


def ops(arch: arch_lib.Arch) -> list[Op]:
  """The op sequence of `arch` with each op's costs."""
  arch_lib.validate(arch)
  out = []
  r, cin, cs, k = (arch.resolution, arch.in_channels, arch.stem_channels,
                   arch.stem_kernel)
  h = arch_lib.conv_out(r, k, arch.stem_stride)
  stem_act = r * r * cin + h * h * cs
  out.append(Op("stem", h * h * cs * k * k * cin, k * k * cin * cs, 2 * cs, cs,
                stem_act, stem_act))
  for i, (b, s) in enumerate(arch_lib.block_shapes(arch)):
    hw, howo = s.h * s.w, s.ho * s.wo
    x = hw * b.in_channels
    e = hw * b.mid_channels if b.has_expand else x
    d = howo * b.mid_channels
    o = howo * b.out_channels
    res = x if b.shortcut else 0
    if b.has_expand:
      out.append(Op(f"blocks[{i}].expand", hw * b.in_channels * b.mid_channels,
                    b.in_channels * b.mid_channels, 2 * b.mid_channels,
                    b.mid_channels, x + e, x + e))
    kk = b.kernel_size * b.kernel_size
    out.append(Op(f"blocks[{i}].depthwise", howo * b.mid_channels * kk,
                  b.mid_channels * kk, 2 * b.mid_channels, b.mid_channels,
                  e + d + res, max(e, d) + hw + res))
    out.append(Op(f"blocks[{i}].project", howo * b.mid_channels * b.out_channels,
                  b.mid_channels * b.out_channels, 2 * b.out_channels,
                  b.out_channels, d + o, d + o + res))
  hf = arch_lib.final_size(arch)
  c = arch.blocks[-1].out_channels if arch.blocks else cs
  if arch.mix_channels is not None:
    m = arch.mix_channels
    act = hf * hf * (c + m)
    out.append(Op("feature_mix", hf * hf * c * m, c * m, 2 * m, m, act, act))
    c = m
  nc = arch.num_classes
  out.append(Op("classifier", c * nc, c * nc, nc, nc, c + nc, c + nc))
  return out


def profile(arch: arch_lib.Arch, sram: bool = True) -> dict[str, int]:
  """The figures of the module docstring, as a dict with exactly KEYS
  (without `sram_bytes` when `sram` is false: planning the arena costs about
  5x the rest, which matters when sampling thousands of subnets)."""
  layers = ops(arch)
  out = {
      "macs": sum(o.macs for o in layers),
      "params": sum(o.weights + o.bn_or_bias for o in layers),
      "peak_activation_bytes": max(o.act_bytes for o in layers),
      "peak_activation_inplace_bytes": max(o.act_inplace_bytes for o in layers),
      "flash_bytes": sum(o.weights + PER_CHANNEL_BYTES * o.out_channels
                         for o in layers),
  }
  if sram:
    out["sram_bytes"] = schedule.plan_memory(schedule.op_specs(arch)).peak_bytes
  return out


def _human(n: int, unit: str = "") -> str:
  if unit == "B":
    return f"{n:,} B ({n / 1024:.1f} kB)"
  return f"{n:,} ({n / 1e6:.2f}M)"


def format_report(arch: arch_lib.Arch, name: str = "",
                  layers: bool = False) -> str:
  p = profile(arch)
  lines = []
  if name:
    lines.append(name)
  lines.append(f"input {arch.resolution}x{arch.resolution}x{arch.in_channels}, "
               f"{len(arch.blocks)} blocks, {arch.num_classes} classes")
  if layers:
    lines.append(f"{'op':24s} {'MACs':>12s} {'params':>10s} {'act B':>10s} "
                 f"{'in-place B':>11s}")
    for o in ops(arch):
      lines.append(f"{o.name:24s} {o.macs:12,d} {o.weights + o.bn_or_bias:10,d} "
                   f"{o.act_bytes:10,d} {o.act_inplace_bytes:11,d}")
  lines.append(f"macs                           {_human(p['macs'])}")
  lines.append(f"params                         {_human(p['params'])}")
  for key in KEYS[2:]:
    lines.append(f"{key:30s} {_human(p[key], 'B')}")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  import argparse
  parser = argparse.ArgumentParser(
      prog="python -m jaxtiny.tinynas.profile",
      description="MACs, params, int8 peak activation memory and flash of a "
                  "ProxylessNAS/MCUNet architecture JSON file.")
  parser.add_argument("arch", help="architecture JSON file")
  parser.add_argument("--json", action="store_true",
                      help="print one JSON object with exactly the keys "
                           + ", ".join(KEYS))
  parser.add_argument("--layers", action="store_true",
                      help="also print the per-op table")
  args = parser.parse_args(argv)
  try:
    arch = arch_lib.load(args.arch)
  except arch_lib.ArchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.json:
    print(json.dumps(profile(arch)))
  else:
    print(format_report(arch, args.arch, layers=args.layers))
  return 0


if __name__ == "__main__":
  sys.exit(main())
