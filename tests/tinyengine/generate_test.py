"""Generated C code: bit-exact with the integer reference (plain, poisoned,
sanitized), arena bugs caught by poisoning, the interpreter baseline, the
Cortex-M7 build, and bad input."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtiny.tinyengine import generate
from jaxtiny.tinyengine import graph
from jaxtiny.tinyengine import host
from jaxtiny.tinyengine import interpreter
from jaxtiny.tinyengine import schedule
from jaxtiny.tinynas import model
from jaxtiny.tinynas import profile as profile_lib
from jaxtiny.tinynas import space as space_lib
from tests import helpers


@pytest.fixture(scope="module")
def net():
  """A random subnet at R=40 (every kernel size, strides 1 and 2, residual
  blocks) with non-trivial BN statistics, quantized, and test inputs."""
  sp = space_lib.SearchSpace(0.3, 40)
  arch = space_lib.to_arch(sp, space_lib.sample(sp, np.random.default_rng(3)))
  params, state = model.init(arch, jax.random.key(0))
  params["classifier"]["w"] = params["classifier"]["w"] * 100
  x = np.asarray(jax.random.normal(jax.random.key(1), (260, 40, 40, 1)))
  step = jax.jit(lambda s, xb: model.apply(arch, params, s, xb, True)[1])
  for _ in range(3):
    state = step(state, jnp.asarray(x[:100]))
  ops = graph.fold(arch, params, state)
  g = graph.quantize(ops, graph.calibrate(ops, x[:128]), (40, 40, 1))
  xq = graph.quantize_input(g, x[128:])
  return arch, g, xq, graph.run(g, xq)


@pytest.fixture(scope="module")
def generated(net, tmp_path_factory):
  arch, g, _, _ = net
  gen = generate.generate(arch, g)
  out = str(tmp_path_factory.mktemp("gen"))
  generate.write_files(gen.files, out)
  return gen, out


def test_generated_code_is_bit_exact(net, generated):
  _, _, xq, ref = net
  gen, out = generated
  kinds = {s.kind for s in gen.plan.specs}
  assert {"conv", "depthwise", "add", "avgpool", "fc"} <= kinds
  assert len(gen.plan.inplace) > 0
  for poison in (False, True):
    got = host.build(out, poison=poison).invoke(xq)
    np.testing.assert_array_equal(got, ref)


def test_every_depthwise_variant_is_bit_exact(net, tmp_path):
  # One channel at a time (no blocks), and no fusion: the other kernels.
  arch, g, xq, ref = net
  specs = schedule.op_specs(arch)
  for fuse in ("none", "auto"):
    plan = schedule.plan_memory(specs, fuse=fuse, dw_blocks={})
    out = str(tmp_path / fuse)
    generate.write_files(generate.generate(arch, g, plan=plan).files, out)
    text = open(os.path.join(out, "model.c")).read()
    assert "dwblk_" not in text and ("fused_" in text) == (fuse == "auto")
    np.testing.assert_array_equal(host.build(out, poison=True).invoke(xq),
                                  ref)


def test_generated_code_bakes_in_the_plan(net, generated):
  gen, out = generated
  text = open(os.path.join(out, "model.c")).read()
  header = open(os.path.join(out, "model.h")).read()
  assert f"#define MODEL_ARENA_BYTES {gen.plan.arena_bytes}" in header
  assert "static int8_t arena[MODEL_ARENA_BYTES]" in text
  # Straight-line calls with literal offsets; no op table or dispatch.
  assert "switch" not in text and "tk_op" not in text
  assert gen.plan.fused, "the plan fuses no expansion; pick another net"
  for i, s in enumerate(gen.plan.specs):
    kk = f"k{s.kernel}s{s.stride}"
    if s.kind == "depthwise" and s.inputs[0] in gen.plan.fused:
      e = gen.plan.specs[i - 1]
      x, y = gen.plan.offsets[e.inputs[0]], gen.plan.offsets[s.output]
      assert f"fused_{kk}c{e.in_shape[2]}(arena + {x}, arena + {y}" in text
    elif s.kind == "depthwise":
      fn = "dwblk" if gen.plan.dw_blocks.get(i, 1) > 1 else "dw"
      assert f"{fn}_{kk}(arena + {gen.plan.offsets[s.inputs[0]]}" in text
  # Unrolled taps: every product of the 7x7 window is written out (per
  # channel, or over a block of channels).
  if any(s.kind == "depthwise" and s.kernel == 7 for s in gen.plan.specs):
    assert ("r[6 * w + 6] * k6_6" in text or
            "r[6 * rs + 6 * cb + cc] * wt[48 * c + c0 + cc]" in text)
  assert gen.plan.dw_blocks, "no depthwise op got a channel block"
  # Flash data: int8 weights + 12 B per output channel, as the profiler says.
  assert gen.flash_data_bytes == profile_lib.profile(net[0])["flash_bytes"]


def test_sanitized_poisoned_build_is_bit_exact(net, generated):
  _, _, xq, ref = net
  _, out = generated
  got = host.run_sanitized(out, xq[:24], poison=True)
  np.testing.assert_array_equal(got, ref[:24])


def _long_lived(plan):
  """A buffer read well after it is written (a residual block input)."""
  for b in plan.buffers:
    seg = b.segments[-1]
    if b.tensors and seg.end - seg.start >= 3 and seg.end < len(plan.specs):
      return b
  raise AssertionError("no long-lived tensor in the plan")


def test_poisoning_catches_a_lifetime_the_plan_got_wrong(net, generated,
                                                         tmp_path):
  arch, g, xq, ref = net
  gen, _ = generated
  plan = gen.plan
  victim = _long_lived(plan)
  # The planner's bug: it believes the buffer dies one op after it is
  # written. Offsets are untouched, so without poisoning the stale bytes are
  # still there and the result is right by luck.
  seg = victim.segments[-1]
  short = dataclasses.replace(seg, end=seg.start + 1)
  bad_buffers = tuple(
      dataclasses.replace(b, segments=b.segments[:-1] + (short,))
      if b.name == victim.name else b for b in plan.buffers)
  bad = dataclasses.replace(plan, buffers=bad_buffers)
  generate.write_files(generate.generate(arch, g, plan=bad,
                                         verify_plan=False).files,
                       str(tmp_path))
  np.testing.assert_array_equal(host.build(str(tmp_path)).invoke(xq[:32]),
                                ref[:32])
  poisoned = host.build(str(tmp_path), poison=True).invoke(xq[:32])
  assert not np.array_equal(poisoned, ref[:32])


def test_an_overlapping_placement_is_rejected_and_would_be_wrong(
    net, generated, tmp_path):
  arch, g, xq, ref = net
  gen, _ = generated
  plan = gen.plan
  victim = _long_lived(plan)
  seg = victim.segments[-1]
  # Move another tensor that is alive at the same time onto the victim.
  life_end = {t: s.end for b in plan.buffers for t, s in zip(b.tensors,
                                                             b.segments)}
  other = next(s.output for i, s in enumerate(plan.specs)
               if seg.start < i < seg.end and
               plan.offsets[s.output] != plan.offsets[victim.tensors[-1]] and
               life_end.get(s.output, i) < seg.end)
  offsets = dict(plan.offsets, **{other: plan.offsets[victim.tensors[-1]]})
  bad = dataclasses.replace(plan, offsets=offsets)
  with pytest.raises(schedule.PlanError, match="overlap while both are alive"):
    generate.generate(arch, g, plan=bad)
  generate.write_files(generate.generate(arch, g, plan=bad,
                                         verify_plan=False).files,
                       str(tmp_path))
  got = host.build(str(tmp_path), poison=True).invoke(xq[:32])
  assert not np.array_equal(got, ref[:32])


@pytest.mark.parametrize("optimised", [False, True])
def test_interpreter_baseline_is_bit_exact(net, optimised):
  arch, g, xq, ref = net
  it = interpreter.Interpreter(arch, g, optimised=optimised)
  np.testing.assert_array_equal(it.invoke(xq), ref)
  sram = it.sram_bytes()
  greedy = schedule.plan_memory(schedule.op_specs(arch), strategy="greedy")
  assert sram["arena"] == greedy.arena_bytes
  channels = sum(len(op.args["m0"]) for op in g.ops if "m0" in op.args)
  assert sram["requant_tables"] == 8 * channels
  assert sram["total"] == sum(v for k, v in sram.items() if k != "total")


def test_cortex_m7_build_matches_the_plan(net, generated):
  gen, out = generated
  assert host.arm_toolchain(), ("arm-none-eabi-gcc is missing: `make "
                                "toolchain` installs gcc-arm-none-eabi")
  sizes = host.cross_compile(out)
  # SRAM: the arena (and shared scratch) is all the static RAM there is.
  assert sizes["bss"] + sizes["data"] == gen.plan.peak_bytes
  # Flash: the planned const data, plus code and a few small constants.
  assert sizes["rodata"] >= gen.flash_data_bytes
  assert 0 < sizes["text"] < 64 * 1024
  assert sizes["rodata"] - gen.flash_data_bytes < 2048
  # The stack the kernels need on top (accumulator blocks, the stem's
  # window) stays small.
  assert 0 < sizes["stack_bytes_bound"] < 8192


def test_mismatched_weights_are_rejected(net, tmp_path):
  arch, g, _, _ = net
  other = arch.replace(num_classes=arch.num_classes + 1)
  with pytest.raises(generate.GenerateError, match="do not match"):
    generate.generate(other, g)
  blocks = list(arch.blocks)
  b = blocks[1]
  blocks[1] = dataclasses.replace(b, kernel_size=3 if b.kernel_size != 3
                                  else 5)
  with pytest.raises(generate.GenerateError,
                     match=r"op \d+ \(depthwise -> b1.dw\): weights int8"):
    generate.generate(arch.replace(blocks=tuple(blocks)), g)


def test_budget_and_unsupported_ops_fail_before_writing(net, tmp_path):
  arch, g, _, _ = net
  with pytest.raises(schedule.PlanError, match="over the budget"):
    generate.generate(arch, g, budget_bytes=1024)
  spec = schedule.op_specs(arch)[0]
  with pytest.raises(generate.GenerateError, match="unsupported op"):
    generate.check_supported([dataclasses.replace(spec, kind="maxpool")])
  with pytest.raises(generate.GenerateError, match="kernel 4"):
    generate.check_supported([dataclasses.replace(spec, kernel=4)])
  assert not os.listdir(tmp_path)


def test_cli_errors_write_nothing(tmp_path):
  out = tmp_path / "out"
  proc = helpers.run_python(["-m", "jaxtiny.tinyengine.generate",
                             f"--weights={tmp_path / 'missing.npz'}",
                             f"--out={out}"], check=False)
  assert proc.returncode == 2 and "does not exist" in proc.stderr
  assert not out.exists()


def test_files_are_written_atomically(generated, tmp_path):
  gen, _ = generated
  paths = generate.write_files(gen.files, str(tmp_path))
  paths2 = generate.write_files(gen.files, str(tmp_path))
  assert paths == paths2
  assert sorted(os.listdir(tmp_path)) == ["model.c", "model.h"]


def test_build_of_missing_files_says_what_to_do(tmp_path):
  with pytest.raises(FileNotFoundError, match="generate the model first"):
    host.build(str(tmp_path))
