"""Memory scheduler: lifetimes, in-place reuse, first-fit arena, the
TF-Lite-Micro-style baseline, on a hand-worked graph and the published
MCUNet configs."""

import dataclasses
import os

import pytest

from jaxtiny.tinyengine import schedule
from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import profile as profile_lib
from tests import helpers

CONFIGS = ("mcunet-5fps_imagenet.json", "mcunet-256kb-1mb_imagenet.json",
           "mbv2-w0.35-r144_imagenet.json",
           "proxyless-w0.25-r112_imagenet.json")
# Published TinyEngine peak SRAM (STM32H743), kB; the target.
TINYENGINE_KB = {"mcunet-5fps_imagenet.json": 96,
                 "mcunet-256kb-1mb_imagenet.json": 215}


def _load(name):
  return arch_lib.load(os.path.join(helpers.shared_mcunet_dir(), name))


def _tiny():
  # input 8x8x1 -> stem 4x4x4 -> block 4 -> 8 -> 4 (k3 s1, shortcut)
  # -> pool 4 -> 10 logits.
  return arch_lib.Arch(resolution=8, in_channels=1, stem_channels=4,
                       blocks=(arch_lib.Block(4, 4, 3, 1, 2, 8, True),),
                       mix_channels=None, num_classes=10)


def test_specs_of_a_small_network():
  specs = schedule.op_specs(_tiny())
  assert [s.output for s in specs] == ["stem", "b0.expand", "b0.dw",
                                       "b0.project", "b0.add", "pool",
                                       "logits"]
  assert specs[0].in_shape == (8, 8, 1) and specs[0].out_shape == (4, 4, 4)
  assert specs[2].kind == schedule.DEPTHWISE and specs[2].pad == (1, 1, 1, 1)
  assert specs[4].inputs == ("b0.project", "stem")
  assert specs[-1].out_shape == (1, 1, 10)


def test_tinyengine_plan_by_hand():
  # Lifetimes (op index; input -1, logits read at 7): input [-1, 0] 64 B,
  # stem [0, 4] 64, expand [1, 2] 128 -> dw in place [2, 3] 128, project
  # [3, 4] 64 -> add in place [4, 5] 64, pool [5, 6] 4, logits [6, 7] 10.
  # Largest first: expand/dw at 0; input at 0 (dead by op 1); stem clears
  # expand -> 128; project clears dw (op 3) and stem -> 192. Peak live at op
  # 3: stem + dw + project = 256 = the arena.
  plan = schedule.plan_memory(schedule.op_specs(_tiny()), scratch="shared",
                              fuse="none", dw_blocks={})
  assert plan.inplace == {"b0.dw", "b0.add"}
  assert plan.offsets["b0.expand"] == plan.offsets["b0.dw"] == 0
  assert plan.offsets["input"] == 0
  assert plan.offsets["stem"] == 128
  assert plan.offsets["b0.project"] == plan.offsets["b0.add"] == 192
  assert plan.arena_bytes == 256 == max(plan.live_bytes())
  # (fuse="none" here: the hand-worked numbers are for the plain graph.)
  # Scratch: the dw's input channel plane (4x4 = 16 B) and the
  # projection's two int16 input columns (cin 8 > cout 4: 2 x 2 x 8 = 32 B);
  # the expansion and the direct stem convolution need none.
  assert plan.scratch_per_op == (0, 0, 16, 32, 0, 0, 0)
  assert plan.scratch_bytes == 32 and plan.peak_bytes == 256 + 32
  schedule.check_plan(plan)
  # Scratch in the arena instead: buffers alive during their op only. The
  # plane (op 2) clears expand/dw [0, 128) and stem [128, 192) -> 192; the
  # columns (op 3) also clear project [192, 256) -> 256. Arena 288 = the
  # bytes alive at op 3 (64 + 128 + 64 + 32): a tie with the shared layout.
  arena = schedule.plan_memory(schedule.op_specs(_tiny()), scratch="arena",
                               fuse="none", dw_blocks={})
  assert arena.scratch_bytes == 0
  assert arena.scratch_offsets == {2: 192, 3: 256}
  assert arena.peak_bytes == arena.arena_bytes == 288 == max(arena.live_bytes())
  schedule.check_plan(arena)
  auto = schedule.plan_memory(schedule.op_specs(_tiny()), fuse="none",
                              dw_blocks={})
  assert auto.peak_bytes == min(plan.peak_bytes, arena.peak_bytes)
  # Wider depthwise planes where they fit in the gaps without raising the
  # peak: 4 channels (64 B at [192, 256)) fit, 8 (128 B) would reach 320.
  wide = schedule.plan_memory(schedule.op_specs(_tiny()), fuse="none")
  assert wide.dw_blocks == {2: 4} and wide.scratch_per_op[2] == 64
  assert wide.peak_bytes == auto.peak_bytes
  schedule.check_plan(wide)


def test_greedy_plan_by_hand():
  # No in-place: at op 2, stem + expand + dw = 320; the generic stem
  # convolution's im2col columns (2 px x 9 taps x 2 B = 36 B) live in the
  # arena during op 0, the only op with scratch.
  plan = schedule.plan_memory(schedule.op_specs(_tiny()), strategy="greedy")
  assert not plan.inplace and plan.scratch_bytes == 0
  assert max(plan.live_bytes()) == 320
  assert plan.arena_bytes >= 320
  assert set(plan.scratch_offsets) == {0}
  assert plan.scratch_per_op[0] == 36
  schedule.check_plan(plan)


def test_stride2_inplace_depthwise_shrinks_to_a_quarter():
  arch = arch_lib.Arch(resolution=16, in_channels=1, stem_channels=8,
                       blocks=(arch_lib.Block(8, 8, 3, 2, 3, 24, False),),
                       mix_channels=None, num_classes=10)
  plan = schedule.plan_memory(schedule.op_specs(arch), fuse="none")
  (buf,) = [b for b in plan.buffers if "b0.dw" in b.tensors]
  assert buf.tensors == ("b0.expand", "b0.dw")
  assert [s.nbytes for s in buf.segments] == [8 * 8 * 24, 4 * 4 * 24]


def test_fusing_an_expansion_into_its_depthwise():
  # stem 8x8x8 -> expand 8x8x24 -> dw s2 4x4x24 -> project 4x4x8. The peak
  # is the expansion (stem 512 + expand 1,536 = 2,048). Fused, the expanded
  # tensor never exists: the largest op is the fused one, stem 512 + dw 384
  # + one 8x8 plane 64 = 960 (the stem op needs 256 + 512 = 768).
  arch = arch_lib.Arch(resolution=16, in_channels=1, stem_channels=8,
                       blocks=(arch_lib.Block(8, 8, 3, 2, 3, 24, False),),
                       mix_channels=None, num_classes=10)
  specs = schedule.op_specs(arch)
  assert schedule.fusable(specs) == ["b0.expand"]
  plain = schedule.plan_memory(specs, fuse="none")
  fused = schedule.plan_memory(specs)
  assert fused.fused == {"b0.expand"}
  assert "b0.expand" not in fused.offsets
  assert max(plain.live_bytes()) == 512 + 1536
  assert max(fused.live_bytes()) == 512 + 384 + 64
  assert fused.peak_bytes < plain.peak_bytes
  schedule.check_plan(fused)
  with pytest.raises(schedule.PlanError, match="cannot fuse"):
    schedule.plan_memory(specs, fuse=["b0.dw"])


@pytest.mark.parametrize("name", CONFIGS)
def test_published_configs_plan_without_overlap(name):
  specs = schedule.op_specs(_load(name))
  ours = schedule.plan_memory(specs)
  base = schedule.plan_memory(specs, strategy="greedy")
  schedule.check_plan(ours)
  schedule.check_plan(base)
  # The arena can never beat the bytes alive at once; ours reaches it.
  assert ours.arena_bytes == max(ours.live_bytes())
  assert base.arena_bytes >= max(base.live_bytes())
  assert ours.peak_bytes <= base.peak_bytes
  # A shared scratch would be set by the depthwise planes, not by im2col.
  shared = schedule.plan_memory(specs, scratch="shared")
  assert shared.scratch_bytes == max(
      n for s, n in zip(specs, shared.scratch_per_op)
      if s.kind == schedule.DEPTHWISE)
  assert ours.peak_bytes <= shared.peak_bytes
  # The profiler's in-place rule counts the same tensors (plus one plane).
  prof = profile_lib.profile(_load(name))
  assert shared.arena_bytes <= prof["peak_activation_inplace_bytes"]
  assert prof["sram_bytes"] == ours.peak_bytes


@pytest.mark.parametrize("name", sorted(TINYENGINE_KB))
def test_peak_sram_at_or_below_published_tinyengine(name):
  plan = schedule.plan_memory(schedule.op_specs(_load(name)))
  assert plan.peak_bytes <= TINYENGINE_KB[name] * 1024


def test_check_plan_catches_an_overlap():
  plan = schedule.plan_memory(schedule.op_specs(_tiny()))
  bad = dataclasses.replace(plan, offsets=dict(plan.offsets,
                                                **{"b0.project": 100}))
  with pytest.raises(schedule.PlanError, match="overlap while both are alive"):
    schedule.check_plan(bad)


def test_budget_error_says_by_how_much():
  with pytest.raises(schedule.PlanError) as e:
    schedule.plan_memory(schedule.op_specs(_tiny()), budget_bytes=200)
  assert "88 B over the budget of 200 B" in str(e.value)


def test_bad_graphs_are_rejected():
  specs = schedule.op_specs(_tiny())
  with pytest.raises(schedule.PlanError, match="before any op writes it"):
    schedule.plan_memory(specs[1:])
  with pytest.raises(schedule.PlanError, match="written twice"):
    schedule.plan_memory(specs + [specs[-1]])
  with pytest.raises(schedule.PlanError, match="strategy"):
    schedule.plan_memory(specs, strategy="tflm")
