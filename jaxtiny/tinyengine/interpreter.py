"""The interpreter baseline: the same int8 graph run by a TF-Lite-Micro-style
runtime (`csrc/interp/tk_interp_s8.c`): an op table built at start-up, one
dispatch per op to the generic library kernels, tensors in one arena laid
out by the greedy planner (`schedule.plan_memory(..., "greedy")`: no in-place
ops, per-op im2col scratch in the arena, 16-byte aligned buffers).

  it = Interpreter(arch, qgraph, optimised=True)
  logits = it.invoke(x_q)                 # int8 [N, H, W, C] -> [N, K]
  it.sram_bytes()                         # arena + runtime tables in RAM

SRAM of this runtime, as TF Lite Micro holds it: the arena; the op table
(one `tk_op` per op, built at start-up); and the per-channel requantization
multipliers and shifts, which TF Lite Micro computes from the model's float
scales during Prepare and keeps in its persistent arena (8 bytes per output
channel). Weights and biases stay in Flash.
"""

from __future__ import annotations

import numpy as np

from jaxtiny.tinyengine import ckernels
from jaxtiny.tinyengine import host
from jaxtiny.tinyengine import schedule
from jaxtiny.tinynas import arch as arch_lib

_KIND = {schedule.CONV: 1, schedule.DEPTHWISE: 2, schedule.FC: 3,
         schedule.AVGPOOL: 4, schedule.ADD: 5}


class Interpreter:
  """Builds the op table of `g` (a `graph.QGraph` of `arch`) over a greedy
  arena; `optimised` picks the library's optimised kernel variants."""

  def __init__(self, arch: arch_lib.Arch, g, optimised: bool = True):
    lib, ffi = ckernels._lib()  # pylint: disable=protected-access
    from jaxtiny.tinyengine import generate  # pylint: disable=import-outside-toplevel
    specs = schedule.op_specs(arch)
    generate.check_supported(specs)
    generate.check_graph(specs, g)
    self.plan = schedule.plan_memory(specs, strategy="greedy")
    self.lib, self.ffi, self.optimised = lib, ffi, int(optimised)
    self.specs = specs
    self._keep = []                    # arrays the C structs point into
    self.ops = ffi.new("tk_op[]", len(specs))
    self.requant_bytes = 0
    off = self.plan.offsets
    for i, (op, s) in enumerate(zip(g.ops, specs)):
      o = self.ops[i]
      a = op.args
      o.kind = _KIND[s.kind]
      o.input = off[s.inputs[0]]
      o.input2 = off[s.inputs[1]] if len(s.inputs) > 1 else 0
      o.output = off[s.output]
      o.scratch = self.plan.scratch_offsets.get(i, 0)
      o.scratch_bytes = self.plan.scratch_per_op[i]
      h, w, c = s.in_shape
      ho, wo, co = s.out_shape
      o.in_dims.n, o.in_dims.h, o.in_dims.w, o.in_dims.c = 1, h, w, c
      o.out_dims.n, o.out_dims.h, o.out_dims.w, o.out_dims.c = 1, ho, wo, co
      if s.kind in (schedule.CONV, schedule.DEPTHWISE, schedule.FC):
        wt = np.ascontiguousarray(a["w"])
        bias = np.ascontiguousarray(a["bias"], np.int32)
        m0 = np.ascontiguousarray(a["m0"], np.int32)
        sh = np.ascontiguousarray(a["shift"], np.int32)
        self._keep += [wt, bias, m0, sh]
        o.weights = ffi.cast("const int8_t *", ffi.from_buffer(wt))
        o.bias = ffi.cast("const int32_t *", ffi.from_buffer(bias))
        o.requant.multiplier = ffi.cast("const int32_t *", ffi.from_buffer(m0))
        o.requant.shift = ffi.cast("const int32_t *", ffi.from_buffer(sh))
        self.requant_bytes += 8 * len(m0)
        o.params.input_zp, o.params.output_zp = a["zp_in"], a["zp_out"]
        o.params.act_min, o.params.act_max = a["act_min"], a["act_max"]
        if s.kind == schedule.CONV:
          f = o.filter_dims
          f.n, f.h, f.w, f.c = wt.shape
        elif s.kind == schedule.DEPTHWISE:
          f = o.filter_dims
          f.n, f.h, f.w, f.c = (1, *wt.shape)
        if s.kind != schedule.FC:
          o.params.stride = s.stride
          o.params.pad_top, o.params.pad_left = s.pad[0], s.pad[2]
      elif s.kind == schedule.AVGPOOL:
        o.params.act_min, o.params.act_max = a["act_min"], a["act_max"]
      elif s.kind == schedule.ADD:
        ad = o.add
        ad.a_zp, ad.b_zp, ad.output_zp = a["zp_a"], a["zp_b"], a["zp_out"]
        ad.a_multiplier, ad.a_shift = a["m1"], a["shift1"]
        ad.b_multiplier, ad.b_shift = a["m2"], a["shift2"]
        ad.output_multiplier, ad.output_shift = a["m_out"], a["shift_out"]
        ad.act_min, ad.act_max = a["act_min"], a["act_max"]
    self.arena = np.zeros(self.plan.arena_bytes, np.int8)
    self.input_shape = specs[0].in_shape
    self.output_bytes = specs[-1].out_shape[2]

  def op_table_bytes(self) -> int:
    return self.ffi.sizeof("tk_op") * len(self.specs)

  def sram_bytes(self) -> dict[str, int]:
    """The runtime's SRAM: arena, op table, requantization tables."""
    out = {"arena": self.plan.arena_bytes, "op_table": self.op_table_bytes(),
           "requant_tables": self.requant_bytes}
    out["total"] = sum(out.values())
    return out

  def invoke(self, x_q: np.ndarray) -> np.ndarray:
    x_q, out = host.batch_buffers(x_q, self.input_shape, self.output_bytes)
    ffi = self.ffi
    status = self.lib.tk_interp_invoke_batch(
        self.ops, len(self.specs),
        ffi.cast("int8_t *", ffi.from_buffer(self.arena)), self.optimised,
        len(x_q), ffi.cast("const int8_t *", ffi.from_buffer(x_q)),
        self.plan.offsets[schedule.INPUT], int(np.prod(self.input_shape)),
        ffi.cast("int8_t *", ffi.from_buffer(out)),
        self.plan.offsets[schedule.LOGITS], self.output_bytes)
    if status != 0:
      raise RuntimeError(f"the interpreter returned status {status}.")
    return out
