"""Architecture spec for MobileNetV2 / ProxylessNAS-style networks.

The vocabulary TinyNAS and TinyEngine both speak. This module is a leaf: it
imports neither the search nor the engine (nor JAX), so either side can read
architectures without an import cycle.

An `Arch` is a frozen, hashable value:

  stem      conv k x k, stride 2, `in_channels -> stem_channels`, BN, ReLU6
  blocks    mobile inverted bottlenecks (`Block`): 1x1 expand + BN + ReLU6
            (absent when the expand ratio is 1), k x k depthwise with stride s
            + BN + ReLU6, 1x1 linear projection + BN, identity shortcut when
            the block has one (only legal when shapes allow)
  mix       optional 1x1 feature-mix conv + BN + ReLU6
  head      global average pool, linear classifier with bias

It reads and writes the published MCUNet / ProxylessNAS JSON format
("ProxylessNASNets": `first_conv`, `blocks` of `MobileInvertedResidualBlock`
with `mobile_inverted_conv` and `shortcut`, `feature_mix_layer`, `classifier`,
`resolution`). Blocks whose `mobile_inverted_conv` is a `ZeroLayer` are
identities in the published networks and are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator

from jaxtiny import fileio


class ArchError(ValueError):
  """A malformed architecture description; the message names the place."""


@dataclasses.dataclass(frozen=True)
class Block:
  """One mobile inverted bottleneck block.

  `mid_channels` is the expanded width; it equals `in_channels` when
  `expand_ratio` is 1 (no expansion conv).
  """
  in_channels: int
  out_channels: int
  kernel_size: int
  stride: int
  expand_ratio: float
  mid_channels: int
  shortcut: bool

  @property
  def has_expand(self) -> bool:
    return self.expand_ratio != 1


@dataclasses.dataclass(frozen=True)
class Arch:
  """A whole network: stem, blocks, optional feature-mix layer, classifier."""
  resolution: int
  in_channels: int
  stem_channels: int
  blocks: tuple[Block, ...]
  mix_channels: int | None
  num_classes: int
  stem_kernel: int = 3
  stem_stride: int = 2

  @property
  def feature_channels(self) -> int:
    """Channels entering global pooling and the classifier."""
    if self.mix_channels is not None:
      return self.mix_channels
    return self.blocks[-1].out_channels if self.blocks else self.stem_channels

  def replace(self, **kw: Any) -> "Arch":
    return dataclasses.replace(self, **kw)


def conv_out(size: int, kernel: int, stride: int) -> int:
  """Spatial size after a 'same'-padded (pad = k // 2) convolution."""
  return (size + 2 * (kernel // 2) - kernel) // stride + 1


def default_mid_channels(in_channels: int, expand_ratio: float) -> int:
  """The ProxylessNAS rule when `mid_channels` is null: round(in * ratio)."""
  return int(round(in_channels * expand_ratio))


@dataclasses.dataclass(frozen=True)
class BlockShapes:
  """Spatial sizes around one block: input h x w, output ho x wo."""
  h: int
  w: int
  ho: int
  wo: int


def block_shapes(arch: Arch) -> Iterator[tuple[Block, BlockShapes]]:
  """Yields every block with its input and output spatial sizes."""
  h = w = conv_out(arch.resolution, arch.stem_kernel, arch.stem_stride)
  for b in arch.blocks:
    ho, wo = conv_out(h, b.kernel_size, b.stride), conv_out(w, b.kernel_size,
                                                           b.stride)
    yield b, BlockShapes(h, w, ho, wo)
    h, w = ho, wo


def final_size(arch: Arch) -> int:
  """Spatial side of the last feature map (before pooling)."""
  h = conv_out(arch.resolution, arch.stem_kernel, arch.stem_stride)
  for b in arch.blocks:
    h = conv_out(h, b.kernel_size, b.stride)
  return h


# ------------------------------------------------------------------ validation

def _positive(value: Any, where: str, field: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ArchError(f"{where}: field '{field}' must be a positive number, got "
                    f"{value!r}.")
  if value <= 0:
    raise ArchError(f"{where}: field '{field}' must be positive, got {value!r}.")
  if isinstance(value, float) and field != "expand_ratio":
    if not value.is_integer():
      raise ArchError(f"{where}: field '{field}' must be an integer, got "
                      f"{value!r}.")
    value = int(value)
  return value


def validate(arch: Arch) -> Arch:
  """Checks sizes and channel flow; returns `arch` or raises ArchError."""
  _positive(arch.resolution, "arch", "resolution")
  _positive(arch.in_channels, "first_conv", "in_channels")
  _positive(arch.stem_channels, "first_conv", "out_channels")
  _positive(arch.stem_kernel, "first_conv", "kernel_size")
  _positive(arch.stem_stride, "first_conv", "stride")
  _positive(arch.num_classes, "classifier", "out_features")
  prev = arch.stem_channels
  for i, (b, s) in enumerate(block_shapes(arch)):
    where = f"blocks[{i}]"
    for field in ("in_channels", "out_channels", "kernel_size", "stride",
                  "expand_ratio", "mid_channels"):
      _positive(getattr(b, field), where, field)
    if b.kernel_size % 2 != 1:
      raise ArchError(f"{where}: field 'kernel_size' must be odd, got "
                      f"{b.kernel_size}.")
    if b.in_channels != prev:
      raise ArchError(
          f"{where}: field 'in_channels' is {b.in_channels} but the previous "
          f"layer outputs {prev} channels.")
    if not b.has_expand and b.mid_channels != b.in_channels:
      raise ArchError(
          f"{where}: field 'mid_channels' is {b.mid_channels} but expand_ratio "
          f"1 means no expansion (mid_channels must equal in_channels "
          f"{b.in_channels}).")
    if b.shortcut and (b.stride != 1 or b.in_channels != b.out_channels):
      raise ArchError(
          f"{where}: field 'shortcut' is an identity but the block changes "
          f"shape (stride {b.stride}, {b.in_channels} -> {b.out_channels} "
          "channels); drop the shortcut.")
    if s.ho <= 0:
      raise ArchError(f"{where}: the feature map has shrunk to nothing; raise "
                      "'resolution' or remove stride-2 blocks.")
    prev = b.out_channels
  if arch.mix_channels is not None:
    _positive(arch.mix_channels, "feature_mix_layer", "out_channels")
  return arch


# ------------------------------------------------------------------ JSON I/O

_SKIP_BLOCKS = ("ZeroLayer",)


def _get(d: Any, key: str, where: str) -> Any:
  if not isinstance(d, dict):
    raise ArchError(f"{where}: expected a JSON object, got {type(d).__name__}.")
  if key not in d:
    raise ArchError(f"{where}: missing field '{key}'.")
  return d[key]


def _int(d: dict, key: str, where: str) -> int:
  return int(_positive(_get(d, key, where), where, key))


def from_dict(d: dict) -> Arch:
  """Parses the ProxylessNAS / MCUNet JSON format (a loaded dict)."""
  if not isinstance(d, dict):
    raise ArchError("architecture: expected a JSON object at the top level.")
  resolution = _int(d, "resolution", "arch")
  fc = _get(d, "first_conv", "arch")
  name = _get(fc, "name", "first_conv")
  if name != "ConvLayer":
    raise ArchError(f"first_conv: unknown layer name {name!r} (expected "
                    "'ConvLayer').")
  in_channels = _int(fc, "in_channels", "first_conv")
  stem_channels = _int(fc, "out_channels", "first_conv")
  stem_kernel = _int(fc, "kernel_size", "first_conv")
  stem_stride = _int(fc, "stride", "first_conv")

  raw_blocks = _get(d, "blocks", "arch")
  if not isinstance(raw_blocks, list):
    raise ArchError("arch: field 'blocks' must be a list.")
  blocks = []
  for i, rb in enumerate(raw_blocks):
    where = f"blocks[{i}]"
    bname = _get(rb, "name", where)
    if bname != "MobileInvertedResidualBlock":
      raise ArchError(f"{where}: unknown layer name {bname!r} (expected "
                      "'MobileInvertedResidualBlock').")
    conv = _get(rb, "mobile_inverted_conv", where)
    cwhere = f"{where}.mobile_inverted_conv"
    cname = _get(conv, "name", cwhere)
    if cname in _SKIP_BLOCKS:
      continue
    if cname != "MBInvertedConvLayer":
      raise ArchError(f"{cwhere}: unknown layer name {cname!r} (expected "
                      "'MBInvertedConvLayer' or 'ZeroLayer').")
    cin = _int(conv, "in_channels", cwhere)
    cout = _int(conv, "out_channels", cwhere)
    k = _int(conv, "kernel_size", cwhere)
    stride = _int(conv, "stride", cwhere)
    ratio = _positive(_get(conv, "expand_ratio", cwhere), cwhere,
                      "expand_ratio")
    mid = conv.get("mid_channels")
    if ratio == 1:
      mid = cin if mid is None else _positive(mid, cwhere, "mid_channels")
    elif mid is None:
      mid = default_mid_channels(cin, ratio)
    else:
      mid = int(_positive(mid, cwhere, "mid_channels"))
    sc = _get(rb, "shortcut", where)
    if sc is not None:
      sname = _get(sc, "name", f"{where}.shortcut")
      if sname != "IdentityLayer":
        raise ArchError(f"{where}.shortcut: unknown layer name {sname!r} "
                        "(expected 'IdentityLayer' or null).")
    ratio = int(ratio) if float(ratio).is_integer() else float(ratio)
    blocks.append(Block(cin, cout, k, stride, ratio, int(mid), sc is not None))

  mix = d.get("feature_mix_layer")
  mix_channels = None
  if mix is not None:
    mname = _get(mix, "name", "feature_mix_layer")
    if mname != "ConvLayer":
      raise ArchError(f"feature_mix_layer: unknown layer name {mname!r} "
                      "(expected 'ConvLayer' or null).")
    mix_in = _int(mix, "in_channels", "feature_mix_layer")
    last = blocks[-1].out_channels if blocks else stem_channels
    if mix_in != last:
      raise ArchError(f"feature_mix_layer: field 'in_channels' is {mix_in} but "
                      f"the last block outputs {last} channels.")
    if _int(mix, "kernel_size", "feature_mix_layer") != 1:
      raise ArchError("feature_mix_layer: field 'kernel_size' must be 1.")
    mix_channels = _int(mix, "out_channels", "feature_mix_layer")

  cl = _get(d, "classifier", "arch")
  clname = _get(cl, "name", "classifier")
  if clname != "LinearLayer":
    raise ArchError(f"classifier: unknown layer name {clname!r} (expected "
                    "'LinearLayer').")
  in_features = _int(cl, "in_features", "classifier")
  num_classes = _int(cl, "out_features", "classifier")
  arch = Arch(resolution=resolution, in_channels=in_channels,
              stem_channels=stem_channels, blocks=tuple(blocks),
              mix_channels=mix_channels, num_classes=num_classes,
              stem_kernel=stem_kernel, stem_stride=stem_stride)
  validate(arch)
  if in_features != arch.feature_channels:
    raise ArchError(f"classifier: field 'in_features' is {in_features} but the "
                    f"network produces {arch.feature_channels} features.")
  return arch


def _conv_layer(cin: int, cout: int, k: int, stride: int) -> dict:
  return {"name": "ConvLayer", "kernel_size": k, "stride": stride,
          "dilation": 1, "groups": 1, "bias": False, "has_shuffle": False,
          "in_channels": cin, "out_channels": cout, "use_bn": True,
          "act_func": "relu6", "dropout_rate": 0, "ops_order": "weight_bn_act"}


def to_dict(arch: Arch) -> dict:
  """The ProxylessNAS / MCUNet JSON format of `arch` (a dict)."""
  blocks = []
  for b in arch.blocks:
    conv = {"name": "MBInvertedConvLayer", "in_channels": b.in_channels,
            "out_channels": b.out_channels, "kernel_size": b.kernel_size,
            "stride": b.stride, "expand_ratio": b.expand_ratio,
            "mid_channels": b.mid_channels if b.has_expand else None,
            "act_func": "relu6", "use_se": False}
    shortcut = None
    if b.shortcut:
      shortcut = {"name": "IdentityLayer", "in_channels": [b.in_channels],
                  "out_channels": [b.out_channels], "use_bn": False,
                  "act_func": None, "dropout_rate": 0,
                  "ops_order": "weight_bn_act"}
    blocks.append({"name": "MobileInvertedResidualBlock",
                   "mobile_inverted_conv": conv, "shortcut": shortcut})
  last = arch.blocks[-1].out_channels if arch.blocks else arch.stem_channels
  mix = (None if arch.mix_channels is None
         else _conv_layer(last, arch.mix_channels, 1, 1))
  return {
      "name": "ProxylessNASNets",
      "bn": {"momentum": 0.1, "eps": 1e-5},
      "first_conv": _conv_layer(arch.in_channels, arch.stem_channels,
                                arch.stem_kernel, arch.stem_stride),
      "blocks": blocks,
      "feature_mix_layer": mix,
      "classifier": {"name": "LinearLayer",
                     "in_features": arch.feature_channels,
                     "out_features": arch.num_classes, "bias": True,
                     "use_bn": False, "act_func": None, "dropout_rate": 0,
                     "ops_order": "weight_bn_act"},
      "resolution": arch.resolution,
  }


def loads(text: str) -> Arch:
  try:
    d = json.loads(text)
  except json.JSONDecodeError as e:
    raise ArchError(f"architecture: not valid JSON ({e}).") from None
  return from_dict(d)


def load(path: str | os.PathLike) -> Arch:
  """Reads an architecture JSON file; errors name the file and the field."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError as e:
    raise ArchError(f"{path}: cannot read the architecture file ({e.strerror})."
                    ) from None
  try:
    return loads(text)
  except ArchError as e:
    raise ArchError(f"{path}: {e}") from None


def dumps(arch: Arch) -> str:
  return json.dumps(to_dict(arch), indent=2) + "\n"


def save(arch: Arch, path: str | os.PathLike) -> None:
  """Writes the JSON format atomically (temp file, then rename)."""
  fileio.atomic_write_bytes(os.fspath(path), dumps(arch).encode())
