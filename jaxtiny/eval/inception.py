"""Inception-v3 pool3 features for the standard FID, from a user's weights file.

The standard FID (Heusel et al. 2017) uses the 2,048-d final average-pool
features of the 2015-12-05 TensorFlow Inception-v3 graph. Those weights cannot
be downloaded here; a user who has them passes the file and we compute the
same features in JAX. Supported files: the PyTorch port used by pytorch-fid
(`pt_inception-2015-12-05-6726825d.pth`, read without torch by
`jaxtiny.eval.torch_weights`) or an `.npz` with the same keys.

The network is the FID variant of Inception-v3 exactly as that port defines
it, which differs from torchvision's ImageNet model in three places:
average-pool branches exclude the zero padding from the mean
(TensorFlow's behaviour), and the last block's pool branch is a 3x3 max pool.
Inputs: images in [0, 1], resized bilinearly (half-pixel centres, no
antialiasing) to 299x299, grayscale repeated to 3 channels, scaled to [-1, 1].
Every BasicConv2d is conv (no bias) + batch norm (eps 1e-3, running
statistics) + ReLU; `prepare` folds the batch norm into the conv once, so the
forward pass is convs, pools and concatenations only.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxtiny import fileio
from jaxtiny.eval import torch_weights

FEATURE_DIM = 2048
RESOLUTION = 299
BN_EPS = 1e-3


class ConvSpec(NamedTuple):
  name: str
  cin: int
  cout: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)


def _c(name, cin, cout, k, stride=1, pad=0) -> ConvSpec:
  k = (k, k) if isinstance(k, int) else tuple(k)
  pad = (pad, pad) if isinstance(pad, int) else tuple(pad)
  return ConvSpec(name, cin, cout, k, stride, pad)


def _block_a(p, cin, pool):
  return [_c(f"{p}.branch1x1", cin, 64, 1),
          _c(f"{p}.branch5x5_1", cin, 48, 1), _c(f"{p}.branch5x5_2", 48, 64, 5, pad=2),
          _c(f"{p}.branch3x3dbl_1", cin, 64, 1), _c(f"{p}.branch3x3dbl_2", 64, 96, 3, pad=1),
          _c(f"{p}.branch3x3dbl_3", 96, 96, 3, pad=1), _c(f"{p}.branch_pool", cin, pool, 1)]


def _block_b(p, cin):
  return [_c(f"{p}.branch3x3", cin, 384, 3, stride=2),
          _c(f"{p}.branch3x3dbl_1", cin, 64, 1), _c(f"{p}.branch3x3dbl_2", 64, 96, 3, pad=1),
          _c(f"{p}.branch3x3dbl_3", 96, 96, 3, stride=2)]


def _block_c(p, c7):
  return [_c(f"{p}.branch1x1", 768, 192, 1),
          _c(f"{p}.branch7x7_1", 768, c7, 1), _c(f"{p}.branch7x7_2", c7, c7, (1, 7), pad=(0, 3)),
          _c(f"{p}.branch7x7_3", c7, 192, (7, 1), pad=(3, 0)),
          _c(f"{p}.branch7x7dbl_1", 768, c7, 1),
          _c(f"{p}.branch7x7dbl_2", c7, c7, (7, 1), pad=(3, 0)),
          _c(f"{p}.branch7x7dbl_3", c7, c7, (1, 7), pad=(0, 3)),
          _c(f"{p}.branch7x7dbl_4", c7, c7, (7, 1), pad=(3, 0)),
          _c(f"{p}.branch7x7dbl_5", c7, 192, (1, 7), pad=(0, 3)),
          _c(f"{p}.branch_pool", 768, 192, 1)]


def _block_d(p):
  return [_c(f"{p}.branch3x3_1", 768, 192, 1), _c(f"{p}.branch3x3_2", 192, 320, 3, stride=2),
          _c(f"{p}.branch7x7x3_1", 768, 192, 1),
          _c(f"{p}.branch7x7x3_2", 192, 192, (1, 7), pad=(0, 3)),
          _c(f"{p}.branch7x7x3_3", 192, 192, (7, 1), pad=(3, 0)),
          _c(f"{p}.branch7x7x3_4", 192, 192, 3, stride=2)]


def _block_e(p, cin):
  return [_c(f"{p}.branch1x1", cin, 320, 1),
          _c(f"{p}.branch3x3_1", cin, 384, 1),
          _c(f"{p}.branch3x3_2a", 384, 384, (1, 3), pad=(0, 1)),
          _c(f"{p}.branch3x3_2b", 384, 384, (3, 1), pad=(1, 0)),
          _c(f"{p}.branch3x3dbl_1", cin, 448, 1),
          _c(f"{p}.branch3x3dbl_2", 448, 384, 3, pad=1),
          _c(f"{p}.branch3x3dbl_3a", 384, 384, (1, 3), pad=(0, 1)),
          _c(f"{p}.branch3x3dbl_3b", 384, 384, (3, 1), pad=(1, 0)),
          _c(f"{p}.branch_pool", cin, 192, 1)]


def conv_specs() -> list[ConvSpec]:
  """Every BasicConv2d of the FID network, named as in the state dict."""
  return ([_c("Conv2d_1a_3x3", 3, 32, 3, stride=2), _c("Conv2d_2a_3x3", 32, 32, 3),
           _c("Conv2d_2b_3x3", 32, 64, 3, pad=1), _c("Conv2d_3b_1x1", 64, 80, 1),
           _c("Conv2d_4a_3x3", 80, 192, 3)]
          + _block_a("Mixed_5b", 192, 32) + _block_a("Mixed_5c", 256, 64)
          + _block_a("Mixed_5d", 288, 64) + _block_b("Mixed_6a", 288)
          + _block_c("Mixed_6b", 128) + _block_c("Mixed_6c", 160)
          + _block_c("Mixed_6d", 160) + _block_c("Mixed_6e", 192)
          + _block_d("Mixed_7a") + _block_e("Mixed_7b", 1280) + _block_e("Mixed_7c", 2048))


def expected_shapes() -> dict[str, tuple[int, ...]]:
  """State-dict keys the features need, with their PyTorch shapes (the fc
  layer and `num_batches_tracked` may be present and are ignored)."""
  out = {}
  for s in conv_specs():
    out[f"{s.name}.conv.weight"] = (s.cout, s.cin) + s.kernel
    for part in ("weight", "bias", "running_mean", "running_var"):
      out[f"{s.name}.bn.{part}"] = (s.cout,)
  return out


Params = dict  # {conv name: (w [kh, kw, cin, cout] float32, b [cout] float32)}


def prepare(state_dict: dict[str, np.ndarray]) -> Params:
  """Validates a state dict and folds each batch norm into its conv.

  Raises:
    ValueError: a key is missing or has the wrong shape (the message names it).
  """
  problems = []
  for key, shape in expected_shapes().items():
    if key not in state_dict:
      problems.append(f"missing {key}")
    elif tuple(state_dict[key].shape) != shape:
      problems.append(f"{key} has shape {tuple(state_dict[key].shape)}, expected {shape}")
  if problems:
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    raise ValueError("not the FID Inception-v3 weights (pytorch-fid's "
                     "pt_inception-2015-12-05 layout): " + "; ".join(problems[:5]) + more)
  params = {}
  for s in conv_specs():
    g = lambda part: np.asarray(state_dict[f"{s.name}.{part}"], np.float64)  # noqa: E731
    scale = g("bn.weight") / np.sqrt(g("bn.running_var") + BN_EPS)
    w = g("conv.weight") * scale[:, None, None, None]           # [O, I, kh, kw]
    b = g("bn.bias") - g("bn.running_mean") * scale
    params[s.name] = (jnp.asarray(w.transpose(2, 3, 1, 0), jnp.float32),
                      jnp.asarray(b, jnp.float32))
  return params


def load(path: str) -> tuple[Params, str]:
  """Reads a weights file; returns (params, sha256 of the file)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"Inception-v3 weights file {path} does not exist; pass the FID weights "
        "(pytorch-fid's pt_inception-2015-12-05-6726825d.pth) or leave the option empty")
  return prepare(torch_weights.load_state_dict(path)), fileio.sha256_file(path)


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  """A state dict of the right layout with random weights and BN statistics
  (tests and the cross-check against the PyTorch implementation)."""
  rng = np.random.default_rng(seed)
  out = {}
  for s in conv_specs():
    fan_in = s.cin * s.kernel[0] * s.kernel[1]
    out[f"{s.name}.conv.weight"] = (rng.standard_normal((s.cout, s.cin) + s.kernel)
                                    * np.sqrt(2.0 / fan_in)).astype(np.float32)
    out[f"{s.name}.bn.weight"] = rng.uniform(0.5, 1.5, s.cout).astype(np.float32)
    out[f"{s.name}.bn.bias"] = rng.uniform(-0.2, 0.2, s.cout).astype(np.float32)
    out[f"{s.name}.bn.running_mean"] = rng.uniform(-0.2, 0.2, s.cout).astype(np.float32)
    out[f"{s.name}.bn.running_var"] = rng.uniform(0.5, 2.0, s.cout).astype(np.float32)
  return out


def _conv(params, spec: ConvSpec, x):
  w, b = params[spec.name]
  y = jax.lax.conv_general_dilated(
      x, w, (spec.stride, spec.stride), [(spec.padding[0],) * 2, (spec.padding[1],) * 2],
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jax.nn.relu(y + b)


def max_pool(x, k: int, stride: int, pad: int = 0):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, stride, stride, 1),
                               [(0, 0), (pad, pad), (pad, pad), (0, 0)])


def avg_pool_exclude_pad(x, k: int = 3, pad: int = 1):
  """Stride-1 average pool whose mean counts only in-image pixels
  (PyTorch's count_include_pad=False, TensorFlow's SAME average pool)."""
  window = ((1, k, k, 1), (1, 1, 1, 1), [(0, 0), (pad, pad), (pad, pad), (0, 0)])
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, *window)
  count = jax.lax.reduce_window(jnp.ones(x.shape[1:3], x.dtype)[None, :, :, None], 0.0,
                                jax.lax.add, *window)
  return total / count


def _mixed(params, specs: list[ConvSpec], x, kind: str, last: bool = False):
  c = {s.name.split(".", 1)[1]: functools.partial(_conv, params, s) for s in specs}
  if kind == "a":
    return jnp.concatenate([
        c["branch1x1"](x), c["branch5x5_2"](c["branch5x5_1"](x)),
        c["branch3x3dbl_3"](c["branch3x3dbl_2"](c["branch3x3dbl_1"](x))),
        c["branch_pool"](avg_pool_exclude_pad(x))], axis=-1)
  if kind == "b":
    return jnp.concatenate([
        c["branch3x3"](x), c["branch3x3dbl_3"](c["branch3x3dbl_2"](c["branch3x3dbl_1"](x))),
        max_pool(x, 3, 2)], axis=-1)
  if kind == "c":
    b7 = c["branch7x7_3"](c["branch7x7_2"](c["branch7x7_1"](x)))
    d = x
    for i in range(1, 6):
      d = c[f"branch7x7dbl_{i}"](d)
    return jnp.concatenate([c["branch1x1"](x), b7, d,
                            c["branch_pool"](avg_pool_exclude_pad(x))], axis=-1)
  if kind == "d":
    b3 = c["branch3x3_2"](c["branch3x3_1"](x))
    b7 = x
    for i in range(1, 5):
      b7 = c[f"branch7x7x3_{i}"](b7)
    return jnp.concatenate([b3, b7, max_pool(x, 3, 2)], axis=-1)
  # "e": the FID graph's last block pools with a max, the one before with a
  # padding-excluding average.
  b3 = c["branch3x3_1"](x)
  d = c["branch3x3dbl_2"](c["branch3x3dbl_1"](x))
  pooled = max_pool(x, 3, 1, pad=1) if last else avg_pool_exclude_pad(x)
  return jnp.concatenate([
      c["branch1x1"](x), c["branch3x3_2a"](b3), c["branch3x3_2b"](b3),
      c["branch3x3dbl_3a"](d), c["branch3x3dbl_3b"](d), c["branch_pool"](pooled)], axis=-1)


def preprocess(images):
  """[N, H, W(, C)] in [0, 1] -> [N, 299, 299, 3] in [-1, 1]."""
  x = jnp.asarray(images, jnp.float32)
  if x.ndim == 3:
    x = x[..., None]
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  x = jax.image.resize(x, (x.shape[0], RESOLUTION, RESOLUTION, 3), "bilinear",
                       antialias=False)
  return 2.0 * x - 1.0


@jax.jit
def features(params: Params, images) -> jax.Array:
  """Pool3 features [N, 2048] of images [N, H, W(, C)] in [0, 1]."""
  specs = {}
  for s in conv_specs():
    specs.setdefault(s.name.split(".")[0], []).append(s)
  conv = lambda name, x: _conv(params, specs[name][0], x)  # noqa: E731
  x = preprocess(images)
  x = conv("Conv2d_2b_3x3", conv("Conv2d_2a_3x3", conv("Conv2d_1a_3x3", x)))
  x = max_pool(x, 3, 2)
  x = max_pool(conv("Conv2d_4a_3x3", conv("Conv2d_3b_1x1", x)), 3, 2)
  for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
    x = _mixed(params, specs[name], x, "a")
  x = _mixed(params, specs["Mixed_6a"], x, "b")
  for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
    x = _mixed(params, specs[name], x, "c")
  x = _mixed(params, specs["Mixed_7a"], x, "d")
  x = _mixed(params, specs["Mixed_7b"], x, "e")
  x = _mixed(params, specs["Mixed_7c"], x, "e", last=True)
  return jnp.mean(x, axis=(1, 2))


def batched_features(params: Params, images: np.ndarray, batch_size: int = 50,
                     progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
  """`features` over a large array in fixed-size batches (one compilation;
  the last batch is padded), returned as float64 [N, 2048]."""
  n = len(images)
  out = np.empty((n, FEATURE_DIM), np.float64)
  for start in range(0, n, batch_size):
    chunk = np.asarray(images[start:start + batch_size])
    m = len(chunk)
    if m < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - m,) + chunk.shape[1:],
                                              chunk.dtype)])
    out[start:start + m] = np.asarray(features(params, chunk))[:m]
    if progress is not None:
      progress(start + m, n)
  return out

