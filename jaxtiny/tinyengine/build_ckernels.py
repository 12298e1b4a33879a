"""cffi (API mode) build of the TinyEngine C kernels as `jaxtiny.tinyengine._tk`.

Used by setup.py (`cffi_modules`) at install time and directly:

  python jaxtiny/tinyengine/build_ckernels.py     # builds the module in place

It never imports the package it builds (only the standard library and cffi).
"""

import glob
import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")
SOURCES = sorted(glob.glob(os.path.join(CSRC, "*", "tk_*.c")))
# The module runs on the machine that builds it (host-side testing), so it is
# tuned for that CPU; set JAXTINY_TK_ARCH="" for a portable build.
ARCH_FLAGS = os.environ.get("JAXTINY_TK_ARCH", "-march=native").split()
CFLAGS = ["-std=c99", "-O3", "-Wall", "-Wextra", *ARCH_FLAGS]

HEADER = os.path.join(CSRC, "include", "tk.h")


def read_cdef(header: str = HEADER) -> str:
  """The public types and kernel prototypes of tk.h (the text between
  `@cdef-begin` and `@cdef-end` markers), so the declarations live once."""
  with open(header) as f:
    text = f.read()
  parts = []
  for chunk in text.split("@cdef-begin")[1:]:
    body = chunk.split("*/", 1)[1]            # drop the rest of the marker comment
    parts.append(body.split("/* @cdef-end */", 1)[0])
  if not parts:
    raise RuntimeError(f"{header} has no @cdef-begin/@cdef-end sections.")
  return "\n".join(parts)


CDEF = read_cdef()


def make_builder(sources: list[str]) -> FFI:
  builder = FFI()
  builder.cdef(CDEF)
  builder.set_source("jaxtiny.tinyengine._tk", '#include "tk.h"\n',
                     sources=sources,
                     include_dirs=[os.path.join(CSRC, "include")],
                     extra_compile_args=CFLAGS)
  return builder


# For setup.py (run from the project root): setuptools rejects absolute paths.
ffibuilder = make_builder([os.path.relpath(s) for s in SOURCES])


def build_in_place() -> str:
  """Compiles the module next to this file; returns the library path."""
  root = os.path.dirname(os.path.dirname(HERE))
  tmp = os.path.join(root, "build", "cffi_tk")
  os.makedirs(tmp, exist_ok=True)
  # compile() runs in `tmp`, so the sources are given as absolute paths.
  path = make_builder(SOURCES).compile(tmpdir=tmp, verbose=False)
  target = os.path.join(HERE, os.path.basename(path))
  for old in glob.glob(os.path.join(HERE, "_tk.*so")):
    if os.path.abspath(old) != os.path.abspath(target):
      os.remove(old)
  if os.path.abspath(path) != os.path.abspath(target):
    os.replace(path, target)
  return target


if __name__ == "__main__":
  print(build_in_place())
  sys.exit(0)
