"""Build and run generated model code on the host.

  m = build(out_dir)                     # cffi module: model.c + tk kernels
  logits = m.invoke(x_q)                 # int8 [N, H, W, C] -> int8 [N, K]
  run_sanitized(out_dir, x_q)            # standalone driver under ASan/UBSan
  sizes = cross_compile(out_dir)         # Cortex-M7 ELF sections (Flash/SRAM)

Every build compiles the generated `model.c` together with the kernel
library sources it calls, with the library's flags (`build_ckernels.CFLAGS`).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import tempfile
from typing import Sequence

import numpy as np

from jaxtiny.tinyengine import build_ckernels

INCLUDE = os.path.join(build_ckernels.CSRC, "include")
# The library files generated code calls (pooling, classifier).
LIBRARY = [os.path.join(build_ckernels.CSRC, p) for p in (
    "pool/tk_avgpool_s8.c", "fc/tk_fully_connected_s8.c")]

HARNESS = """
void model_invoke_batch(int32_t n, const int8_t *x, int8_t *y) {
  int32_t i;
  for (i = 0; i < n; ++i)
    model_invoke(x + (int64_t)i * MODEL_INPUT_BYTES,
                 y + (int64_t)i * MODEL_OUTPUT_BYTES);
}
"""
TRACE_HARNESS = """
static int8_t *trace_buffer;
void model_trace(int32_t op, const int8_t *arena_bytes) {
  int32_t i;
  if (trace_buffer == 0) return;
  for (i = 0; i < MODEL_ARENA_BYTES; ++i)
    trace_buffer[(int64_t)op * MODEL_ARENA_BYTES + i] = arena_bytes[i];
}
void model_set_trace(int8_t *buffer) { trace_buffer = buffer; }
"""
CDEF = """
int8_t *model_input_buffer(void);
void model_invoke(const int8_t *input, int8_t *output);
void model_invoke_batch(int32_t n, const int8_t *x, int8_t *y);
"""


class BuildError(RuntimeError):
  """The generated code did not compile or link."""


def _model_files(out_dir: str, name: str) -> tuple[str, str]:
  h, c = (os.path.join(out_dir, f"{name}.{ext}") for ext in ("h", "c"))
  for p in (h, c):
    if not os.path.exists(p):
      raise FileNotFoundError(f"{p} does not exist; generate the model first "
                              "(python -m jaxtiny.tinyengine.generate).")
  return h, c


def _read_define(header: str, key: str) -> int:
  with open(header) as f:
    for line in f:
      parts = line.split()
      if len(parts) == 3 and parts[:2] == ["#define", key]:
        return int(parts[2])
  raise BuildError(f"{header} does not define {key}.")


def batch_buffers(x_q: np.ndarray, input_shape: tuple[int, ...],
                  output_bytes: int) -> tuple[np.ndarray, np.ndarray]:
  """Checks an int8 batch [N, H, W, C] and allocates its logits [N, K]."""
  x_q = np.ascontiguousarray(x_q)
  if x_q.dtype != np.int8 or tuple(x_q.shape[1:]) != tuple(input_shape):
    raise ValueError(f"input must be int8 [N, {tuple(input_shape)}], got "
                     f"{x_q.dtype} {x_q.shape}.")
  return x_q, np.empty((len(x_q), output_bytes), np.int8)


@dataclasses.dataclass
class HostModel:
  """A generated model compiled into this process."""
  lib: object
  ffi: object
  input_shape: tuple[int, int, int]
  output_bytes: int
  path: str
  num_ops: int = 0
  arena_bytes: int = 0

  def trace(self, x_q: np.ndarray) -> np.ndarray:
    """The arena after every op for one image x_q [H, W, C] (a build with
    trace=True): int8 [num_ops, arena_bytes]."""
    if not hasattr(self.lib, "model_set_trace"):
      raise ValueError("build the model with trace=True to trace it.")
    buf = np.zeros((self.num_ops, self.arena_bytes), np.int8)
    self.lib.model_set_trace(self.ffi.cast("int8_t *",
                                           self.ffi.from_buffer(buf)))
    try:
      self.invoke(x_q[None])
    finally:
      self.lib.model_set_trace(self.ffi.NULL)
    return buf

  def invoke(self, x_q: np.ndarray) -> np.ndarray:
    x_q, out = batch_buffers(x_q, self.input_shape, self.output_bytes)
    self.lib.model_invoke_batch(
        len(x_q), self.ffi.cast("const int8_t *", self.ffi.from_buffer(x_q)),
        self.ffi.cast("int8_t *", self.ffi.from_buffer(out)))
    return out


def build(out_dir: str, name: str = "model", poison: bool = False,
          cflags: Sequence[str] | None = None, trace: bool = False
          ) -> HostModel:
  """Compiles the generated model in `out_dir` as a cffi extension (in
  `out_dir/build`) and loads it. `poison` defines MODEL_POISON; `trace`
  defines MODEL_TRACE and adds the hook `HostModel.trace` uses."""
  from cffi import FFI  # pylint: disable=import-outside-toplevel
  header, source = _model_files(out_dir, name)
  flags = list(build_ckernels.CFLAGS if cflags is None else cflags)
  if poison:
    flags.append("-DMODEL_POISON")
  if trace:
    flags.append("-DMODEL_TRACE")
  with open(source, "rb") as f:
    digest = hashlib.sha256(f.read() + " ".join(flags).encode()).hexdigest()
  modname = f"_jtmodel_{digest[:16]}"
  build_dir = os.path.join(out_dir, "build")
  os.makedirs(build_dir, exist_ok=True)
  found = glob.glob(os.path.join(build_dir, modname + ".*so"))
  if found:
    path = found[0]
  else:
    ffi = FFI()
    ffi.cdef(CDEF + ("void model_set_trace(int8_t *buffer);" if trace else ""))
    ffi.set_source(modname, f'#include "{name}.h"\n{HARNESS}' +
                   (TRACE_HARNESS if trace else ""),
                   sources=[source] + LIBRARY,
                   include_dirs=[INCLUDE, os.path.abspath(out_dir)],
                   extra_compile_args=flags)
    try:
      path = ffi.compile(tmpdir=build_dir, verbose=False)
    except Exception as e:  # cffi raises VerificationError / CompileError
      raise BuildError(f"compiling {source} failed: {e}") from e
  loader = importlib.machinery.ExtensionFileLoader(modname, path)
  spec = importlib.util.spec_from_file_location(modname, path, loader=loader)
  module = importlib.util.module_from_spec(spec)
  loader.exec_module(module)
  shape = tuple(_read_define(header, f"MODEL_INPUT_{k}") for k in "HWC")
  return HostModel(module.lib, module.ffi, shape,
                   _read_define(header, "MODEL_OUTPUT_BYTES"), path,
                   _read_define(header, "MODEL_NUM_OPS"),
                   _read_define(header, "MODEL_ARENA_BYTES"))


DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

/* Reads N images from argv[1], writes N logit vectors to argv[2]. */
int main(int argc, char **argv) {
  FILE *in, *out;
  int8_t x[MODEL_INPUT_BYTES], y[MODEL_OUTPUT_BYTES];
  if (argc != 3) return 2;
  in = fopen(argv[1], "rb");
  out = fopen(argv[2], "wb");
  if (!in || !out) return 3;
  while (fread(x, 1, MODEL_INPUT_BYTES, in) == MODEL_INPUT_BYTES) {
    model_invoke(x, y);
    if (fwrite(y, 1, MODEL_OUTPUT_BYTES, out) != MODEL_OUTPUT_BYTES) return 4;
  }
  fclose(in);
  fclose(out);
  return 0;
}
"""


def run_sanitized(out_dir: str, x_q: np.ndarray, name: str = "model",
                  poison: bool = True) -> np.ndarray:
  """Compiles the model with a file-driven `main` under
  -fsanitize=address,undefined (any finding aborts) and returns its logits
  for `x_q`."""
  header, source = _model_files(out_dir, name)
  n_out = _read_define(header, "MODEL_OUTPUT_BYTES")
  with tempfile.TemporaryDirectory() as tmp:
    drv = os.path.join(tmp, "driver.c")
    with open(drv, "w") as f:
      f.write(DRIVER.replace('"model.h"', f'"{name}.h"'))
    exe = os.path.join(tmp, "model_driver")
    cmd = ["gcc", "-std=c99", "-O1", "-g", "-fno-omit-frame-pointer",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
           "-Wall", "-I", INCLUDE, "-I", os.path.abspath(out_dir), drv, source,
           *LIBRARY, "-o", exe]
    if poison:
      cmd.insert(1, "-DMODEL_POISON")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
      raise BuildError(f"sanitized build failed:\n{proc.stderr[-3000:]}")
    xin, yout = os.path.join(tmp, "x.bin"), os.path.join(tmp, "y.bin")
    np.ascontiguousarray(x_q, np.int8).tofile(xin)
    proc = subprocess.run([exe, xin, yout], capture_output=True, text=True)
    if proc.returncode:
      raise BuildError(f"the sanitized model failed (exit {proc.returncode}):"
                       f"\n{proc.stderr[-3000:]}")
    return np.fromfile(yout, np.int8).reshape(-1, n_out)


ARM_GCC = "arm-none-eabi-gcc"
ARM_FLAGS = ("-mcpu=cortex-m7", "-mthumb", "-Os", "-std=c99",
             "-ffreestanding", "-ffunction-sections", "-fdata-sections")


def arm_toolchain() -> str | None:
  return shutil.which(ARM_GCC)


def cross_compile(out_dir: str, name: str = "model") -> dict[str, int]:
  """Compiles and links the generated model for a Cortex-M7 (no libc,
  unused code dropped, entry `model_invoke`) and returns the ELF's section
  sizes: text, rodata, data, bss, plus flash (text + rodata + data), sram
  (data + bss) and stack_bytes_bound (from -fstack-usage, see
  `_stack_bound`)."""
  if arm_toolchain() is None:
    raise BuildError(f"{ARM_GCC} is not installed (Debian package "
                     "gcc-arm-none-eabi; `make install` installs it as root).")
  _, source = _model_files(out_dir, name)
  with tempfile.TemporaryDirectory() as tmp:
    elf = os.path.join(tmp, "model.elf")
    cmd = [ARM_GCC, *ARM_FLAGS, "-fstack-usage", "-I", INCLUDE, "-I",
           os.path.abspath(out_dir), source, *LIBRARY, "-nostdlib",
           "-Wl,--gc-sections", "-Wl,-e,model_invoke", "-o", elf]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    if proc.returncode:
      raise BuildError(f"cross-compilation failed:\n{proc.stderr[-3000:]}")
    sizes = elf_sections(elf)
    sizes["stack_bytes_bound"] = _stack_bound(glob.glob(os.path.join(tmp,
                                                                     "*.su")))
    return sizes


def _stack_bound(su_files: Sequence[str]) -> int:
  """An upper bound on the stack of model_invoke from GCC's -fstack-usage
  frames: its own frame, plus the largest kernel it calls, plus the largest
  helper a kernel calls (the generated code nests no deeper)."""
  frames = {}
  for path in su_files:
    with open(path) as f:
      for line in f:
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
          func = parts[0].rsplit(":", 1)[-1]
          frames[func] = max(frames.get(func, 0), int(parts[1]))
  helpers = [v for k, v in frames.items()
             if k.startswith(("dwplane_", "expand_channel", "requant_row"))]
  kernels = [v for k, v in frames.items()
             if k != "model_invoke" and not k.startswith(
                 ("dwplane_", "expand_channel", "requant_row"))]
  return (frames.get("model_invoke", 0) + max(kernels, default=0) +
          max(helpers, default=0))


def elf_sections(elf: str) -> dict[str, int]:
  """Section sizes of an ELF file (read from its section headers)."""
  import struct  # pylint: disable=import-outside-toplevel
  with open(elf, "rb") as f:
    blob = f.read()
  if blob[:4] != b"\x7fELF":
    raise BuildError(f"{elf} is not an ELF file.")
  is64 = blob[4] == 2
  end = "<" if blob[5] == 1 else ">"
  if is64:
    shoff, = struct.unpack_from(end + "Q", blob, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", blob, 0x3A)
  else:
    shoff, = struct.unpack_from(end + "I", blob, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", blob, 0x2E)

  def header(i):
    base = shoff + i * shentsize
    if is64:
      name, typ, flags, _, off, size = struct.unpack_from(end + "IIQQQQ", blob,
                                                          base)
    else:
      name, typ, flags, _, off, size = struct.unpack_from(end + "IIIIII", blob,
                                                          base)
    return name, typ, flags, off, size

  _, _, _, str_off, _ = header(shstrndx)
  sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
  for i in range(shnum):
    name_off, typ, flags, _, size = header(i)
    name = blob[str_off + name_off:blob.index(b"\0", str_off + name_off)]
    name = name.decode()
    alloc = flags & 0x2
    if not alloc:
      continue
    if name.startswith(".text"):
      sizes["text"] += size
    elif name.startswith(".rodata"):
      sizes["rodata"] += size
    elif name.startswith(".bss") or typ == 8:     # SHT_NOBITS
      sizes["bss"] += size
    elif name.startswith(".data"):
      sizes["data"] += size
  sizes["flash"] = sizes["text"] + sizes["rodata"] + sizes["data"]
  sizes["sram"] = sizes["data"] + sizes["bss"]
  return sizes
