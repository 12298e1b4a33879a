"""Cross-check of `jaxtiny.eval.inception` against pytorch-fid's own network.

The real FID weights cannot be downloaded here, so the check uses random
weights: pytorch-fid's FID Inception-v3 (its patched blocks, resize and
normalisation, via its `InceptionV3` wrapper) is built with random convs and
random batch-norm statistics, its state dict is saved in both `torch.save`
formats, and pool3 features of the same images are compared with ours,
computed from those files by our torch-free reader. Any difference in
layout, padding, pooling, resizing or the reader shows up as a feature
mismatch.

Two stages, because torch is not a dependency of the library:

  # 1. in an environment with torch, torchvision and pytorch-fid:
  python bench/inception_crosscheck.py --stage=torch --dir=/tmp/inception_xcheck
  # 2. in the jaxtiny environment:
  python -m bench.inception_crosscheck --stage=jax --dir=/tmp/inception_xcheck
"""

import argparse
import os
import time

import numpy as np


def torch_stage(out_dir: str, n: int, seed: int) -> None:
  import torch
  from pytorch_fid import inception as pfi

  torch.manual_seed(seed)
  net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  # The FID graph's blocks, as pytorch-fid's fid_inception_v3() sets them up
  # (that function then downloads the weights, which we replace by random ones).
  net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
  net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
  net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
  net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
  net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
  net.Mixed_7b = pfi.FIDInceptionE_1(1280)
  net.Mixed_7c = pfi.FIDInceptionE_2(2048)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
        m.running_mean.uniform_(-0.2, 0.2)
        m.running_var.uniform_(0.5, 2.0)
  pfi.fid_inception_v3 = lambda: net  # The wrapper below then uses our net.
  model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()

  rng = np.random.default_rng(seed)
  images = rng.uniform(0, 1, (n, 28, 28)).astype(np.float32)
  images[: n // 2] = (images[: n // 2] > 0.7).astype(np.float32)  # Binary strokes too.
  x = torch.from_numpy(images)[:, None].repeat(1, 3, 1, 1)
  t0 = time.perf_counter()
  with torch.no_grad():
    feats = model(x)[0].squeeze(-1).squeeze(-1).numpy()
  print(f"torch: {n} images in {time.perf_counter() - t0:.2f} s")
  os.makedirs(out_dir, exist_ok=True)
  state = net.state_dict()
  torch.save(state, os.path.join(out_dir, "weights_zip.pth"))
  torch.save(state, os.path.join(out_dir, "weights_legacy.pth"),
             _use_new_zipfile_serialization=False)
  np.savez(os.path.join(out_dir, "torch_features.npz"), images=images, features=feats)
  print(f"wrote {out_dir}/weights_zip.pth, weights_legacy.pth, torch_features.npz")


def jax_stage(out_dir: str) -> None:
  from jaxtiny.eval import inception

  ref = np.load(os.path.join(out_dir, "torch_features.npz"))
  print("| weights file | max abs diff | max rel diff | feature scale |")
  print("|---|---|---|---|")
  for name in ("weights_zip.pth", "weights_legacy.pth"):
    params, _ = inception.load(os.path.join(out_dir, name))
    t0 = time.perf_counter()
    ours = np.asarray(inception.features(params, ref["images"]))
    dt = time.perf_counter() - t0
    diff = np.abs(ours - ref["features"])
    scale = np.abs(ref["features"]).max()
    print(f"| {name} | {diff.max():.3g} | {diff.max() / scale:.3g} | {scale:.3g} |"
          f" (jax {dt:.2f} s incl. compile)")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--stage", choices=["torch", "jax"], required=True)
  p.add_argument("--dir", default="/tmp/inception_xcheck")
  p.add_argument("--n", type=int, default=8)
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args()
  if a.stage == "torch":
    torch_stage(a.dir, a.n, a.seed)
  else:
    jax_stage(a.dir)


if __name__ == "__main__":
  main()
