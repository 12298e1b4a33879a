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

CDEF = """
typedef struct { int32_t n, h, w, c; } tk_dims;
typedef struct {
  int32_t stride;
  int32_t pad_top, pad_left;
  int32_t input_zp;
  int32_t output_zp;
  int32_t act_min, act_max;
} tk_conv_params;
typedef struct { const int32_t *multiplier; const int32_t *shift; } tk_requant;
typedef struct {
  int32_t a_zp, b_zp, output_zp;
  int32_t a_multiplier, a_shift, b_multiplier, b_shift;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} tk_add_params;

int32_t tk_convolve_s8_get_buffer_size(const tk_dims *filter, int32_t tile);
int32_t tk_convolve_s8(const tk_conv_params *p, const tk_requant *q,
                       const tk_dims *in, const int8_t *input,
                       const tk_dims *filter, const int8_t *filter_data,
                       const int32_t *bias, const tk_dims *out, int8_t *output,
                       int16_t *scratch, int32_t scratch_bytes);
int32_t tk_convolve_4ch_s8(const tk_conv_params *p, const tk_requant *q,
                           const tk_dims *in, const int8_t *input,
                           const tk_dims *filter, const int8_t *filter_data,
                           const int32_t *bias, const tk_dims *out,
                           int8_t *output, int16_t *scratch,
                           int32_t scratch_bytes);
int32_t tk_convolve_1x1_s8(const tk_conv_params *p, const tk_requant *q,
                           const tk_dims *in, const int8_t *input,
                           const tk_dims *filter, const int8_t *filter_data,
                           const int32_t *bias, const tk_dims *out,
                           int8_t *output);
int32_t tk_convolve_1x1_4ch_s8(const tk_conv_params *p, const tk_requant *q,
                               const tk_dims *in, const int8_t *input,
                               const tk_dims *filter, const int8_t *filter_data,
                               const int32_t *bias, const tk_dims *out,
                               int8_t *output);
int32_t tk_depthwise_conv_s8(const tk_conv_params *p, const tk_requant *q,
                             const tk_dims *in, const int8_t *input,
                             const tk_dims *filter, const int8_t *filter_data,
                             const int32_t *bias, const tk_dims *out,
                             int8_t *output);
int32_t tk_depthwise_conv_unrolled_s8(const tk_conv_params *p,
                                      const tk_requant *q, const tk_dims *in,
                                      const int8_t *input,
                                      const tk_dims *filter,
                                      const int8_t *filter_data,
                                      const int32_t *bias, const tk_dims *out,
                                      int8_t *output);
int32_t tk_depthwise_conv_inplace_s8_get_buffer_size(const tk_conv_params *p,
                                                     const tk_dims *in,
                                                     const tk_dims *filter,
                                                     const tk_dims *out);
int32_t tk_depthwise_conv_inplace_s8(const tk_conv_params *p,
                                     const tk_requant *q, const tk_dims *in,
                                     int8_t *buffer, const tk_dims *filter,
                                     const int8_t *filter_data,
                                     const int32_t *bias, const tk_dims *out,
                                     int8_t *scratch, int32_t scratch_bytes);
int32_t tk_fully_connected_s8(int32_t input_zp, int32_t output_zp,
                              int32_t act_min, int32_t act_max,
                              const tk_requant *q, int32_t batch,
                              int32_t in_features, const int8_t *input,
                              int32_t out_features, const int8_t *weights,
                              const int32_t *bias, int8_t *output);
int32_t tk_avgpool_s8(const tk_dims *in, const int8_t *input, int32_t act_min,
                      int32_t act_max, int8_t *output);
int32_t tk_add_s8(const tk_add_params *p, int32_t size, const int8_t *a,
                  const int8_t *b, int8_t *output);
"""



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
