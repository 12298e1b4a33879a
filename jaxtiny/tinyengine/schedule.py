"""Memory planning for deployment: tensor lifetimes, in-place reuse, one
static arena, and a TF-Lite-Micro-style baseline planner.

  specs = op_specs(arch)                       # every op's shapes, batch 1
  plan = plan_memory(specs)                    # TinyEngine-style
  base = plan_memory(specs, strategy="greedy") # TF-Lite-Micro-style
  plan.peak_bytes, plan.offsets["b3.dw"], plan.scratch_bytes

Time is the op index. The input is copied into the arena before op 0 (time
-1) and the logits are copied out after the last op (time len(specs)), so
both count towards SRAM like every other tensor. A tensor is alive from the
op that writes it to the last op that reads it, inclusive: while an op runs,
its inputs and its output coexist, unless the op runs in place.

Strategies:
  tinyengine  what the generated code does: in-place depthwise (the output
              overwrites its input's buffer, which is its input's last use;
              after a stride-2 depthwise the tensor shrinks to a quarter of
              the bytes) and in-place residual add (the sum overwrites the
              addend read last). Scratch: a depthwise op needs one input
              channel plane (h * w bytes); a projection (pointwise, cin >
              cout) two int16 input columns (4 * cin bytes); expansions and
              the stem (a direct convolution, no im2col) need none.
              `scratch=`: "shared" is TinyEngine's layout, one buffer outside
              the arena sized to the largest per-op need; "arena" gives each
              op's scratch a buffer in the arena alive during that op only,
              so it fills gaps next to the live tensors; "auto" (default)
              plans both and keeps the smaller peak (on every network we
              have planned, "arena").
  greedy      what the interpreter baseline does (TF Lite Micro's layout):
              no in-place ops; the generic kernels' scratch (im2col columns
              of `tile` = 2 pixels for non-pointwise convolutions, as
              CMSIS-NN) is a buffer of its own in the arena, alive during
              its op only; buffers start at multiples of 16 bytes, as TF
              Lite Micro aligns them.

Both strategies place buffers the same way: by size, largest first, each at the lowest
offset that does not overlap a buffer placed earlier whose lifetime overlaps
its own (first fit). Peak SRAM = arena + shared scratch.

The module imports no JAX (the profiler command uses it).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from jaxtiny.tinynas import arch as arch_lib

CONV, DEPTHWISE, FC, AVGPOOL, ADD = ("conv", "depthwise", "fc", "avgpool",
                                     "add")
STRATEGIES = ("tinyengine", "greedy")
INPUT, LOGITS = "input", "logits"
# TF Lite Micro aligns every arena buffer to 16 bytes (kBufferAlignment).
GREEDY_ALIGN = 16


class PlanError(ValueError):
  """A graph the planner cannot lay out, or a budget it cannot meet."""


Shape = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class OpSpec:
  """One int8 op at batch 1: what it reads and writes and its geometry.
  Shapes are (h, w, c); the pooled vector and logits are (1, 1, c)."""
  kind: str
  output: str
  inputs: tuple[str, ...]
  in_shape: Shape
  out_shape: Shape
  kernel: int = 1
  stride: int = 1
  pad: tuple[int, int, int, int] = (0, 0, 0, 0)

  @property
  def pointwise(self) -> bool:
    return (self.kind == CONV and self.kernel == 1 and self.stride == 1 and
            self.pad == (0, 0, 0, 0))


def nbytes(shape: Shape) -> int:
  return shape[0] * shape[1] * shape[2]


def op_specs(arch: arch_lib.Arch) -> list[OpSpec]:
  """The deployed op sequence of `arch` (tensor names as `graph.fold`)."""
  arch_lib.validate(arch)
  specs = []

  def conv(kind, src, dst, shape, cout, k, stride):
    p = k // 2
    ho = arch_lib.conv_out(shape[0], k, stride)
    wo = arch_lib.conv_out(shape[1], k, stride)
    out = (ho, wo, cout if kind == CONV else shape[2])
    specs.append(OpSpec(kind, dst, (src,), shape, out, k, stride,
                        (p, p, p, p)))
    return out

  r = arch.resolution
  shape = conv(CONV, INPUT, "stem", (r, r, arch.in_channels),
               arch.stem_channels, arch.stem_kernel, arch.stem_stride)
  cur = "stem"
  for i, b in enumerate(arch.blocks):
    block_in, block_shape = cur, shape
    if b.has_expand:
      shape = conv(CONV, cur, f"b{i}.expand", shape, b.mid_channels, 1, 1)
      cur = f"b{i}.expand"
    shape = conv(DEPTHWISE, cur, f"b{i}.dw", shape, b.mid_channels,
                 b.kernel_size, b.stride)
    shape = conv(CONV, f"b{i}.dw", f"b{i}.project", shape, b.out_channels, 1,
                 1)
    cur = f"b{i}.project"
    if b.shortcut:
      if shape != block_shape:
        raise PlanError(f"block {i}: shortcut between shapes {block_shape} "
                        f"and {shape}.")
      specs.append(OpSpec(ADD, f"b{i}.add", (cur, block_in), shape, shape))
      cur = f"b{i}.add"
  if arch.mix_channels is not None:
    shape = conv(CONV, cur, "mix", shape, arch.mix_channels, 1, 1)
    cur = "mix"
  specs.append(OpSpec(AVGPOOL, "pool", (cur,), shape, (1, 1, shape[2])))
  specs.append(OpSpec(FC, LOGITS, ("pool",), (1, 1, shape[2]),
                      (1, 1, arch.num_classes)))
  return specs


def im2col_bytes(spec: OpSpec, tile: int) -> int:
  """Scratch of the generic im2col convolution for `tile` output pixels
  (int16 columns; `tk_convolve_s8_get_buffer_size`)."""
  return 2 * tile * spec.kernel * spec.kernel * spec.in_shape[2]


def plane_bytes(spec: OpSpec) -> int:
  """Scratch of a generated depthwise kernel: one input channel plane."""
  return spec.in_shape[0] * spec.in_shape[1]


def pointwise_columns(spec: OpSpec) -> bool:
  """Whether the generated pointwise kernel for `spec` widens its two input
  pixels to int16 columns (projections, cin > cout: dot products over cin)
  rather than running over output channels (expansions)."""
  return spec.pointwise and spec.in_shape[2] > spec.out_shape[2]


def scratch_need(spec: OpSpec, strategy: str, tile: int = 2) -> int:
  """Bytes of scratch `spec` needs under `strategy` (see module doc)."""
  if strategy == "tinyengine":
    if spec.kind == DEPTHWISE:
      return plane_bytes(spec)
    if spec.kind == CONV and pointwise_columns(spec):
      return 2 * 2 * spec.in_shape[2]
    return 0
  if spec.kind == CONV and not spec.pointwise:
    return im2col_bytes(spec, tile)
  return 0


@dataclasses.dataclass(frozen=True)
class Segment:
  """A buffer holds `nbytes` over ops start..end (inclusive)."""
  start: int
  end: int
  nbytes: int


@dataclasses.dataclass(frozen=True)
class Buffer:
  """One arena region and the tensors it holds in turn (more than one when
  ops run in place), with one segment per tensor."""
  name: str
  tensors: tuple[str, ...]
  segments: tuple[Segment, ...]

  @property
  def nbytes(self) -> int:
    return max(s.nbytes for s in self.segments)


@dataclasses.dataclass(frozen=True)
class Plan:
  strategy: str
  specs: tuple[OpSpec, ...]
  buffers: tuple[Buffer, ...]
  buffer_offsets: dict[str, int]       # buffer name -> arena offset
  offsets: dict[str, int]              # tensor name -> arena offset
  inplace: frozenset[str]              # outputs of ops that run in place
  scratch_per_op: tuple[int, ...]      # bytes each op needs
  scratch_bytes: int                   # shared scratch (0 for "greedy")
  scratch_offsets: dict[int, int]      # "greedy": op index -> arena offset
  tile: int                            # "greedy": im2col tile (pixels)
  arena_bytes: int
  # Expansion outputs never materialised: each is computed one channel at a
  # time inside the depthwise op that reads it ("tinyengine" only).
  fused: frozenset[str] = frozenset()
  # Depthwise op index -> channels per plane (absent: 1).
  dw_blocks: dict[int, int] = dataclasses.field(default_factory=dict)

  @property
  def peak_bytes(self) -> int:
    """Peak SRAM of activations: arena + shared scratch."""
    return self.arena_bytes + self.scratch_bytes

  def live_bytes(self) -> list[int]:
    """Bytes in live buffers at each time -1 .. len(specs) (no
    fragmentation; the arena can be no smaller than the largest)."""
    n = len(self.specs)
    live = [0] * (n + 2)
    for b in self.buffers:
      for t in range(-1, n + 1):
        live[t + 1] += max((s.nbytes for s in b.segments
                            if s.start <= t <= s.end), default=0)
    return live

  def summary(self) -> dict:
    return {"strategy": self.strategy, "arena_bytes": self.arena_bytes,
            "scratch_bytes": self.scratch_bytes, "peak_bytes": self.peak_bytes,
            "tile": self.tile, "inplace_ops": len(self.inplace),
            "fused_blocks": len(self.fused),
            "max_live_bytes": max(self.live_bytes())}


def reads(specs: Sequence[OpSpec], fused: frozenset[str] = frozenset()
          ) -> list[tuple[str, ...]]:
  """The tensors each op reads from the arena: a fused expansion reads
  nothing (it runs inside its depthwise), and that depthwise reads the
  expansion's input instead."""
  src = {s.output: s.inputs[0] for s in specs if s.output in fused}
  out = []
  for s in specs:
    if s.output in fused:
      out.append(())
    else:
      out.append(tuple(src.get(t, t) for t in s.inputs))
  return out


def _lifetimes(specs: Sequence[OpSpec], fused: frozenset[str] = frozenset()
               ) -> dict[str, tuple[int, int]]:
  """(written at, last read at) of every tensor held in the arena."""
  n = len(specs)
  birth = {INPUT: -1}
  last: dict[str, int] = {}
  for i, (s, r) in enumerate(zip(specs, reads(specs, fused))):
    for name in s.inputs:
      if name not in birth:
        raise PlanError(f"op {i} ({s.kind} -> {s.output}) reads {name!r} "
                        "before any op writes it.")
    for name in r:
      last[name] = i
    if s.output in birth or s.output == INPUT:
      raise PlanError(f"tensor {s.output!r} is written twice (op {i}).")
    birth[s.output] = i
  if LOGITS not in birth:
    raise PlanError(f"no op writes {LOGITS!r}.")
  last[LOGITS] = n
  return {t: (birth[t], last.get(t, birth[t])) for t in birth
          if t not in fused}


def fusable(specs: Sequence[OpSpec]) -> list[str]:
  """Expansions (1x1, stride 1) read only by the depthwise right after them:
  they can be computed one output channel at a time inside it."""
  readers: dict[str, list[int]] = {}
  for i, s in enumerate(specs):
    for t in s.inputs:
      readers.setdefault(t, []).append(i)
  out = []
  for i, s in enumerate(specs[:-1]):
    nxt = specs[i + 1]
    if (s.kind == CONV and s.pointwise and nxt.kind == DEPTHWISE and
        nxt.inputs == (s.output,) and readers.get(s.output) == [i + 1]):
      out.append(s.output)
  return out


def _shapes(specs: Sequence[OpSpec]) -> dict[str, Shape]:
  shapes = {INPUT: specs[0].in_shape}
  for s in specs:
    shapes[s.output] = s.out_shape
  return shapes


def _inplace_source(spec: OpSpec, i: int, life: dict[str, tuple[int, int]],
                    shapes: dict[str, Shape]) -> str | None:
  """The input whose buffer op i may overwrite, if any (TinyEngine)."""
  if spec.kind == DEPTHWISE:
    src = spec.inputs[0]
    if src not in life:                # A fused expansion: not in the arena.
      return None
    fits = nbytes(spec.out_shape) <= nbytes(shapes[src])
    return src if life[src][1] == i and fits else None
  if spec.kind == ADD:
    for src in spec.inputs:
      if life[src][1] == i and shapes[src] == spec.out_shape:
        return src
  return None


def _place(buffers: Sequence[Buffer], align: int = 1) -> dict[str, int]:
  """Largest first, each at the lowest offset (a multiple of `align`) clear
  of every time-overlapping segment of the buffers placed before it."""
  order = sorted(buffers, key=lambda b: (-b.nbytes, b.segments[0].start,
                                         b.name))
  placed: list[tuple[Buffer, int]] = []
  offsets = {}
  for b in order:
    conflicts = []                   # (own size, other's start, other's end)
    for other, off in placed:
      for sb in b.segments:
        for so in other.segments:
          if sb.start <= so.end and so.start <= sb.end:
            conflicts.append((sb.nbytes, off, off + so.nbytes))
    candidates = sorted({0} | {-(-hi // align) * align
                               for _, _, hi in conflicts})
    for cand in candidates:
      if all(cand + size <= lo or cand >= hi for size, lo, hi in conflicts):
        offsets[b.name] = cand
        placed.append((b, cand))
        break
  return offsets


DW_BLOCKS = (16, 8, 4, 2)


def plan_memory(specs: Sequence[OpSpec], strategy: str = "tinyengine",
                tile: int = 2,
                budget_bytes: int | None = None,
                scratch: str = "auto",
                fuse: str | Sequence[str] = "auto",
                dw_blocks: str | dict[int, int] = "auto") -> Plan:
  """Lays out every activation of `specs` in one arena (see module doc).

  `tile`: the "greedy" im2col tile in output pixels; `budget_bytes`, when
  given, is the SRAM the plan must fit (peak), else PlanError says by how
  much it is exceeded. "tinyengine" only: `fuse` "auto" fuses an expansion
  into its depthwise (see `fusable`) while the peak sits on that block and
  fusing lowers it, "none" never, or the expansion names to fuse;
  `dw_blocks` gives depthwise ops (by index) channel blocks wider than one
  (their plane scratch holds that many channels, which vectorises): "auto"
  widens each to the largest of DW_BLOCKS that leaves the peak unchanged.
  """
  if strategy not in STRATEGIES:
    raise PlanError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
  if not specs:
    raise PlanError("no ops to plan.")
  if scratch not in ("auto", "shared", "arena"):
    raise PlanError(f"scratch must be 'auto', 'shared' or 'arena', got "
                    f"{scratch!r}.")
  if tile < 1:
    raise PlanError(f"tile must be >= 1, got {tile}.")
  specs = tuple(specs)
  if strategy == "greedy":
    plan = _layout(specs, strategy, tile, "arena", frozenset(), {})
    check_budget(plan, budget_bytes)
    return plan
  if fuse == "none":
    fused: frozenset[str] = frozenset()
  elif fuse == "auto":
    plan = _layout(specs, strategy, tile, scratch, frozenset(), {})
    candidates = fusable(specs)
    while True:
      live = plan.live_bytes()
      t = max(range(len(live)), key=lambda k: live[k]) - 1   # op at the peak
      near = [e for e in candidates if e not in plan.fused and
              any(specs[j].output == e for j in (t, t - 1) if 0 <= j)]
      if not near:
        break
      trial = _layout(specs, strategy, tile, scratch, plan.fused | {near[0]},
                      {})
      if trial.peak_bytes >= plan.peak_bytes:
        break
      plan = trial
    fused = plan.fused
  else:
    fused = frozenset(fuse)
    bad = fused - set(fusable(specs))
    if bad:
      raise PlanError(f"cannot fuse {sorted(bad)}: only expansions read by "
                      "the depthwise right after them can be fused.")
  if dw_blocks == "auto":
    plan = _layout(specs, strategy, tile, scratch, fused, {})
    blocks: dict[int, int] = {}
    for i, s in enumerate(specs):
      if s.kind != DEPTHWISE or s.inputs[0] in fused:
        continue
      for cb in DW_BLOCKS:
        if cb > s.in_shape[2]:
          continue
        trial = _layout(specs, strategy, tile, scratch, fused,
                        {**blocks, i: cb})
        if trial.peak_bytes <= plan.peak_bytes:
          blocks[i] = cb
          plan = trial
          break
  else:
    plan = _layout(specs, strategy, tile, scratch, fused, dict(dw_blocks))
  check_budget(plan, budget_bytes)
  return plan


def _layout(specs: tuple[OpSpec, ...], strategy: str, tile: int,
            scratch: str, fused: frozenset[str], blocks: dict[int, int]
            ) -> Plan:
  """One layout for fixed fusion and depthwise channel blocks ("auto"
  scratch: the better of shared and in-arena)."""
  if scratch == "auto":
    return min((_layout(specs, strategy, tile, m, fused, blocks)
                for m in ("shared", "arena")), key=lambda p: p.peak_bytes)
  greedy = strategy == "greedy"
  life = _lifetimes(specs, fused)
  shapes = _shapes(specs)

  # Aliases: a chain of tensors sharing one buffer (in-place ops).
  owner = {t: t for t in life}
  inplace = set()
  if not greedy:
    for i, s in enumerate(specs):
      src = _inplace_source(s, i, life, shapes)
      if src is not None:
        owner[s.output] = owner[src]
        inplace.add(s.output)
  chains: dict[str, list[str]] = {}
  for t in sorted(life, key=lambda t: life[t][0]):
    chains.setdefault(owner[t], []).append(t)
  buffers = [Buffer(root, tuple(ts),
                    tuple(Segment(life[t][0], life[t][1], nbytes(shapes[t]))
                          for t in ts))
             for root, ts in chains.items()]

  # Scratch.
  need = tuple(0 if s.output in fused else
               scratch_need(s, strategy, tile) * blocks.get(i, 1)
               for i, s in enumerate(specs))
  if scratch == "arena":
    for i, b in enumerate(need):
      if b:
        buffers.append(Buffer(f"scratch{i}", (), (Segment(i, i, b),)))
  buffer_offsets = _place(buffers, GREEDY_ALIGN if greedy else 1)
  arena = max(buffer_offsets[b.name] + b.nbytes for b in buffers)
  offsets = {t: buffer_offsets[b.name] for b in buffers for t in b.tensors}
  in_arena = scratch == "arena"
  scratch_offsets = ({i: buffer_offsets[f"scratch{i}"]
                      for i, b in enumerate(need) if b} if in_arena else {})
  return Plan(strategy, specs, tuple(buffers), buffer_offsets, offsets,
              frozenset(inplace), need, 0 if in_arena else max(need),
              scratch_offsets, tile, arena, fused, dict(blocks))


def check_budget(plan: Plan, budget_bytes: int | None) -> None:
  if budget_bytes is not None and plan.peak_bytes > budget_bytes:
    raise PlanError(
        f"the planned peak SRAM is {plan.peak_bytes:,} B (arena "
        f"{plan.arena_bytes:,} + scratch {plan.scratch_bytes:,}), "
        f"{plan.peak_bytes - budget_bytes:,} B over the budget of "
        f"{budget_bytes:,} B; choose a smaller network or resolution.")


def check_plan(plan: Plan) -> None:
  """Raises PlanError if two tensors that are alive at the same time share
  any arena byte (aliases of one in-place op excepted), or a scratch buffer
  overlaps a live tensor."""
  life = _lifetimes(plan.specs, plan.fused)
  shapes = _shapes(plan.specs)
  items = [(t, plan.offsets[t], nbytes(shapes[t]), life[t][0], life[t][1])
           for t in life]
  items += [(f"scratch of op {i}", off, plan.scratch_per_op[i], i, i)
            for i, off in plan.scratch_offsets.items()]
  alias = {}
  for b in plan.buffers:
    for t in b.tensors:
      alias[t] = b.name
  for a in range(len(items)):
    for c in range(a + 1, len(items)):
      ta, oa, sa, ba, ea = items[a]
      tc, oc, sc, bc, ec = items[c]
      if ba <= ec and bc <= ea and oa < oc + sc and oc < oa + sa:
        if alias.get(ta) is not None and alias.get(ta) == alias.get(tc):
          continue
        raise PlanError(f"{ta} [{oa}, {oa + sa}) and {tc} [{oc}, {oc + sc}) "
                        f"overlap while both are alive (ops {max(ba, bc)}.."
                        f"{min(ea, ec)}).")
