"""End-to-end deployment of one quantized network: plan, generate, compile,
check against the integer reference, time against the interpreter baseline,
cross-compile for a Cortex-M7, and report.

  r = deploy(arch, g, out_dir, x_q, labels=y, ref_logits=ref)
  write_report(rows, "deploy.md", "deploy.png")

`deploy` returns one JSON-able dict (see `KEYS`); nothing in it is estimated
except where the key says so.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np

from jaxtiny import fileio
from jaxtiny.tinyengine import generate
from jaxtiny.tinyengine import graph
from jaxtiny.tinyengine import host
from jaxtiny.tinyengine import interpreter
from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import profile as profile_lib


def _best_us(fn, x: np.ndarray, repeat: int) -> float:
  fn(x[:min(len(x), 8)])
  best = float("inf")
  for _ in range(repeat):
    t = time.perf_counter()
    fn(x)
    best = min(best, time.perf_counter() - t)
  return 1e6 * best / len(x)


def deploy(arch: arch_lib.Arch, g, out_dir: str, x_q: np.ndarray,
           labels: np.ndarray | None = None,
           ref_logits: np.ndarray | None = None, timing_images: int = 200,
           repeat: int = 5, budget_bytes: int | None = None,
           sanitize_images: int = 32, cross: bool = True) -> dict:
  """Generates `arch`'s code into `out_dir`, runs it on every image of `x_q`
  and reports. `ref_logits` (the integer reference's logits of `x_q`) are
  computed when not given."""
  gen = generate.generate(arch, g, budget_bytes=budget_bytes)
  generate.write_files(gen.files, out_dir)
  model = host.build(out_dir)
  if ref_logits is None:
    ref_logits = np.concatenate([graph.run(g, x_q[i:i + 256])
                                 for i in range(0, len(x_q), 256)])
  logits = model.invoke(x_q)
  interp = interpreter.Interpreter(arch, g, optimised=True)
  interp_plain = interpreter.Interpreter(arch, g, optimised=False)
  interp_logits = interp.invoke(x_q)
  poisoned = host.build(out_dir, poison=True).invoke(x_q[:sanitize_images])
  sanitized = host.run_sanitized(out_dir, x_q[:sanitize_images])
  greedy = interp.plan
  t_x = x_q[:timing_images]
  t_gen = _best_us(model.invoke, t_x, repeat)
  t_int = _best_us(interp.invoke, t_x, repeat)
  t_plain = _best_us(interp_plain.invoke, t_x, repeat)
  prof = profile_lib.profile(arch)
  sram_int = interp.sram_bytes()
  out = {
      "images": int(len(x_q)),
      "macs": prof["macs"], "params": prof["params"],
      "peak_sram_bytes": gen.plan.peak_bytes,
      "arena_bytes": gen.plan.arena_bytes,
      "scratch_bytes": gen.plan.scratch_bytes,
      "inplace_ops": len(gen.plan.inplace),
      "mcunet_rule_bytes": prof["peak_activation_bytes"],
      "greedy_arena_bytes": greedy.arena_bytes,
      "interpreter_sram_bytes": sram_int,
      "sram_ratio_vs_interpreter": sram_int["total"] / gen.plan.peak_bytes,
      "arena_ratio_vs_greedy": greedy.arena_bytes / gen.plan.peak_bytes,
      "flash_data_bytes": gen.flash_data_bytes,
      "logits_equal_reference": bool(np.array_equal(logits, ref_logits)),
      "interpreter_equal_reference": bool(np.array_equal(interp_logits,
                                                         ref_logits)),
      "poisoned_equal_reference": bool(np.array_equal(
          poisoned, ref_logits[:sanitize_images])),
      "sanitized_equal_reference": bool(np.array_equal(
          sanitized, ref_logits[:sanitize_images])),
      "sanitized_images": int(min(sanitize_images, len(x_q))),
      "latency_us": {"generated": t_gen, "interpreter_optimised": t_int,
                     "interpreter_plain": t_plain},
      "speedup_vs_interpreter": t_int / t_gen,
      "speedup_vs_interpreter_plain": t_plain / t_gen,
      "timing_images": int(len(t_x)),
  }
  if labels is not None:
    labels = np.asarray(labels)
    out["int8_reference_acc"] = float((ref_logits.argmax(1) == labels).mean())
    out["generated_acc"] = float((logits.argmax(1) == labels).mean())
  if cross:
    sizes = host.cross_compile(out_dir)
    out["cortex_m7"] = sizes
    out["cortex_m7_sram_equals_plan"] = (sizes["bss"] + sizes["data"] ==
                                         gen.plan.peak_bytes)
  return out


def markdown_table(rows: dict[str, dict]) -> str:
  """One row per deployed network."""
  head = ("| network | MMACs | peak SRAM (ours) | interpreter SRAM (arena + "
          "tables) | ratio | M7 .bss / stack bound | Flash (M7 .text + "
          ".rodata) | latency ours / interpreter (us) | speed-up | bit-exact "
          "| int8 acc |")
  lines = [head, "|" + "---|" * 11]
  for name, r in rows.items():
    s = r["interpreter_sram_bytes"]
    m7 = r.get("cortex_m7")
    flash = (f"{(m7['text'] + m7['rodata']) / 1024:.1f} kB"
             if m7 else f"{r['flash_data_bytes'] / 1024:.1f} kB (data)")
    stack = m7.get("stack_bytes_bound") if m7 else None
    bss = (f"{m7['bss']:,} B / " + (f"{stack:,} B" if stack else "-")
           if m7 else "-")
    acc = (f"{100 * r['generated_acc']:.2f} %"
           if "generated_acc" in r else "-")
    exact = all(r[k] for k in ("logits_equal_reference",
                               "poisoned_equal_reference",
                               "sanitized_equal_reference"))
    lines.append(
        f"| {name} | {r['macs'] / 1e6:.2f} | "
        f"{r['peak_sram_bytes'] / 1024:.1f} kB | "
        f"{s['total'] / 1024:.1f} kB ({s['arena'] / 1024:.1f} + "
        f"{(s['op_table'] + s['requant_tables']) / 1024:.1f}) | "
        f"{r['sram_ratio_vs_interpreter']:.2f}x | {bss} | {flash} | "
        f"{r['latency_us']['generated']:.0f} / "
        f"{r['latency_us']['interpreter_optimised']:.0f} | "
        f"{r['speedup_vs_interpreter']:.2f}x | "
        f"{'yes' if exact else 'NO'} ({r['images']} images) | {acc} |")
  return "\n".join(lines)


def bar_chart(rows: dict[str, dict], path: str) -> None:
  """Peak SRAM (ours, greedy arena, interpreter total) and latency per
  network, side by side (PNG, written atomically)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  names = list(rows)
  x = np.arange(len(names))
  fig, (a, b) = plt.subplots(1, 2, figsize=(4 + 2.2 * len(names), 4.2))
  ours = [rows[n]["peak_sram_bytes"] / 1024 for n in names]
  arena = [rows[n]["greedy_arena_bytes"] / 1024 for n in names]
  total = [rows[n]["interpreter_sram_bytes"]["total"] / 1024 for n in names]
  wd = 0.27
  a.bar(x - wd, ours, wd, label="generated (planned arena)")
  a.bar(x, arena, wd, label="greedy arena (no in-place)")
  a.bar(x + wd, total, wd, label="interpreter total")
  a.set_xticks(x, names, rotation=20, ha="right")
  a.set_ylabel("peak SRAM (kB)")
  a.legend(fontsize=8)
  gen = [rows[n]["latency_us"]["generated"] / 1e3 for n in names]
  it = [rows[n]["latency_us"]["interpreter_optimised"] / 1e3 for n in names]
  b.bar(x - wd / 2, gen, wd, label="generated")
  b.bar(x + wd / 2, it, wd, label="interpreter (optimised kernels)")
  b.set_xticks(x, names, rotation=20, ha="right")
  b.set_ylabel("host latency per image (ms)")
  b.legend(fontsize=8)
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)


def write_report(rows: dict[str, dict], md_path: str, png_path: str,
                 title: str = "TinyEngine deployment",
                 notes: Sequence[str] = ()) -> None:
  text = [f"# {title}", "", markdown_table(rows), ""]
  text += list(notes)
  fileio.atomic_write_bytes(md_path, ("\n".join(text) + "\n").encode())
  bar_chart(rows, png_path)
