"""Benchmark: one GS-WGAN iteration (n_critic critic steps + 1 generator step).

  python -m bench.gswgan_step [--generators=dcgan,resnet] [--iters=5] [--chunk=4]
  On a GPU: --torch_device=cuda --devices= --nounrolled [--warm_generator=resnet]

Prints, measured in the same process:
  1. JAX vs PyTorch per-iteration time (B=32, 5 critic steps, WGAN-GP, spectral
     norm, sanitized generator step), for each generator. The PyTorch version
     is written here from the same description (it is only a baseline; torch is
     not a jaxtiny dependency). Target: JAX/PyTorch < 1.0 (aim 0.5).
  2. Sanitization overhead: private vs non-private JAX generator step
     (target <= 1.1x).
  3. Stage-1 warm-start throughput: a vmapped chunk and an unrolled chunk
     (one program, each member its own plain convolutions) vs the same
     discriminators one after another (target: vmap >= 1.4x), and the
     vmapped chunk sharded over 1 and 2 simulated CPU devices (each in its own
     subprocess, since the device count is fixed when JAX starts).
  4. Stage 2 with the discriminator bank on disk (a quarter cached): in
     memory vs synchronous files vs write-behind + prefetch (--bank_k).
Only ratios from one run are meaningful on a shared machine.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from jaxtiny.gswgan import models
from jaxtiny.gswgan import steps
from jaxtiny.gswgan import train
from jaxtiny.train import distributed

_GENERATORS = flags.DEFINE_list("generators", ["dcgan", "resnet"], "Generators to time.")
_ITERS = flags.DEFINE_integer("iters", 5, "Timed iterations (best of 3 repeats).")
_CHUNK = flags.DEFINE_integer("chunk", 4, "Discriminators per warm-start chunk.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time the PyTorch baseline.")
_DEVICES = flags.DEFINE_list("devices", ["1", "2"],
                             "Simulated CPU device counts for the sharded warm-start chunk.")
_TORCH_DEVICE = flags.DEFINE_string("torch_device", "cpu",
                                    "Device of the PyTorch baseline ('cpu' or 'cuda').")
_WARM_VMAP = flags.DEFINE_bool("warm_vmap", True, "Also time the vmapped warm-start chunk "
                                "(its first call compiles for minutes on a GPU).")
_UNROLLED = flags.DEFINE_bool("unrolled", True, "Also time the unrolled warm-start chunk "
                              "(its compile time grows with --chunk).")
_WARM_GENERATOR = flags.DEFINE_string("warm_generator", "dcgan",
                                      "Throw-away generator of the warm-start chunk.")
_BANK_K = flags.DEFINE_integer("bank_k", 24, "Discriminators in the stage-2 bank "
                               "benchmark (0 skips it).")
_BANK_STEPS = flags.DEFINE_integer("bank_steps", 40, "Stage-2 steps per bank mode.")
_SHARDED_ONLY = flags.DEFINE_integer(
    "sharded_only", 0, "Internal: time only the vmapped chunk sharded over this "
    "many devices and print the ms.")

B, N_CRITIC = 32, 5


def _best(fn, iters: int, repeats: int = 3) -> float:
  fn()  # Warm-up / compile.
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(iters):
      fn()
    best = min(best, (time.perf_counter() - t) / iters)
  return best * 1e3


# --------------------------------------------------------------------- JAX --

def jax_times(generator: str, iters: int) -> dict[str, float]:
  gen, disc = models.make_generator(generator), models.Discriminator()
  tx = steps.make_optimizer()
  g = steps.init_net(jax.random.key(0), gen, tx)
  d = steps.init_net(jax.random.key(1), disc, tx)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((N_CRITIC, B, 28, 28, 1)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, (N_CRITIC, B)), jnp.int32)
  common = dict(gen=gen, disc=disc, tx_g=tx, tx_d=tx, num_classes=10, clip_norm=1.0 / B)
  it = jax.jit(functools.partial(steps.iteration, noise_multiplier=1.07, sanitize=True, **common))
  gkw = dict(gen=gen, disc=disc, tx=tx, batch_size=B, num_classes=10, clip_norm=1.0 / B)
  g_priv = jax.jit(functools.partial(steps.generator_step, noise_multiplier=1.07, sanitize=True, **gkw))
  g_plain = jax.jit(functools.partial(steps.generator_step, noise_multiplier=0.0, sanitize=False, **gkw))
  key = jax.random.key(3)
  out = {}
  out["iteration"] = _best(lambda: jax.block_until_ready(it(g, g.params, d, x, y, key)), iters)
  out["gen_private"] = _best(lambda: jax.block_until_ready(
      g_priv(g, d.params, d.model_state, key)), iters * 3)
  out["gen_plain"] = _best(lambda: jax.block_until_ready(
      g_plain(g, d.params, d.model_state, key)), iters * 3)
  return out


def _warm_setup(chunk: int, generator: str = "dcgan"):
  gen, disc = models.make_generator(generator), models.Discriminator()
  tx = steps.make_optimizer()
  warm = functools.partial(steps.iteration, gen=gen, disc=disc, tx_g=tx, tx_d=tx,
                           num_classes=10, clip_norm=1.0 / B, noise_multiplier=0.0,
                           sanitize=False)
  gs = [steps.init_net(jax.random.key(2 * i), gen, tx) for i in range(chunk)]
  ds = [steps.init_net(jax.random.key(2 * i + 1), disc, tx) for i in range(chunk)]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((chunk, N_CRITIC, B, 28, 28, 1)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, (chunk, N_CRITIC, B)), jnp.int32)
  keys = jax.random.split(jax.random.key(0), chunk)
  return warm, gs, ds, x, y, keys


def _stack(xs):
  return jax.tree.map(lambda *a: jnp.stack(a), *xs)


def warmstart_times(chunk: int, iters: int, generator: str = "dcgan",
                    unrolled: bool = True, vmapped: bool = True) -> dict[str, float]:
  warm, gs, ds, x, y, keys = _warm_setup(chunk, generator)
  g, d = _stack(gs), _stack(ds)
  single = jax.jit(warm)
  t_vmap = float("nan")
  if vmapped:
    vm = jax.jit(jax.vmap(warm))
    t_vmap = _best(lambda: jax.block_until_ready(vm(g, g.params, d, x, y, keys)), iters, 2)
  t_seq = _best(lambda: jax.block_until_ready(
      [single(gs[i], gs[i].params, ds[i], x[i], y[i], keys[i]) for i in range(chunk)]),
      iters, 2)

  # The "unrolled" warm-up mode: one program, no grouped convs.
  t_un = float("nan")
  if unrolled:
    un = jax.jit(functools.partial(train.map_members, warm))
    t_un = _best(lambda: jax.block_until_ready(un(g, g.params, d, x, y, keys)), iters, 2)
  return {"vmap": t_vmap, "sequential": t_seq, "unrolled": t_un}


def bank_step_times(generator: str, num_disc: int, num_steps: int) -> dict[str, float]:
  """Stage-2 steps (bank.get -> private iteration -> bank.put) with a bank of
  `num_disc` real discriminator states on disk and a cache holding a quarter
  of them, as a paper-scale bank (13 GB) against a 4 GB cache. Modes: `bare`
  (one discriminator state passed from step to step, no bank: the compute
  alone), `memory` (cache holds all: no file traffic), `sync` (every write waited for, no
  prefetch: the bank before write-behind) and `async` (write-behind + prefetch
  of the next step's discriminator, as the trainer runs it). ms per step."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  from jaxtiny.gswgan import bank as bank_lib  # pylint: disable=g-import-not-at-top
  gen, disc = models.make_generator(generator), models.Discriminator()
  tx = steps.make_optimizer()
  it = jax.jit(functools.partial(
      steps.iteration, gen=gen, disc=disc, tx_g=tx, tx_d=tx, num_classes=10,
      clip_norm=1.0 / B, noise_multiplier=1.07, sanitize=True))
  g = steps.init_net(jax.random.key(0), gen, tx)
  d0 = jax.device_get(steps.init_net(jax.random.key(1), disc, tx))
  size = sum(np.asarray(a).nbytes for a in jax.tree.leaves(d0))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((N_CRITIC, B, 28, 28, 1)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, (N_CRITIC, B)), jnp.int32)
  draws = rng.integers(num_disc, size=num_steps + 2)
  jax.block_until_ready(it(g, g.params, d0, x, y, jax.random.key(2)))  # Compile.
  out = {}
  d, gs, ema = jax.device_put(d0), g, g.params
  t = time.perf_counter()
  for step in range(1, num_steps + 1):
    gs, ema, d, _ = it(gs, ema, d, x, y, jax.random.key(step))
  jax.block_until_ready(gs)
  out["bare"] = (time.perf_counter() - t) / num_steps * 1e3
  for mode in ("memory", "sync", "async"):
    root = tempfile.mkdtemp(prefix="gswgan_bank_bench_")
    try:
      cache = (num_disc + 1) * size if mode == "memory" else (num_disc // 4) * size
      bank = bank_lib.DiscriminatorBank(root, d0, cache_bytes=cache)
      for k in range(num_disc):
        bank.write_initial(k, d0)
      bank.wait()
      gs, ema = g, g.params
      t = time.perf_counter()
      for step in range(1, num_steps + 1):
        bank.current_step = step
        k = int(draws[step])
        d = bank.get(k)
        if mode == "async":
          bank.prefetch(int(draws[step + 1]))
        gs, ema, d, _ = it(gs, ema, d, x, y, jax.random.key(step))
        bank.put(k, d)
        if mode == "sync":
          bank.wait()
      jax.block_until_ready(gs)
      out[mode] = (time.perf_counter() - t) / num_steps * 1e3
      bank.close()
    finally:
      shutil.rmtree(root, ignore_errors=True)
  out["mb"] = size / 1e6
  return out


def sharded_warmstart_ms(chunk: int, iters: int, num_devices: int) -> float:
  """The vmapped chunk with its leading axis sharded over `num_devices`, as
  `jaxtiny.gswgan.train.warm_start_bank` runs it."""
  warm, gs, ds, x, y, keys = _warm_setup(chunk)
  sharded = distributed.batch_sharded(distributed.data_mesh(num_devices))
  g, d, x, y, keys = jax.device_put((_stack(gs), _stack(ds), x, y, keys), sharded)
  vm = jax.jit(jax.vmap(warm))
  return _best(lambda: jax.block_until_ready(vm(g, g.params, d, x, y, keys)), iters, 2)


def _sharded_in_subprocess(chunk: int, iters: int, num_devices: int) -> float | None:
  env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                                     f" --xla_force_host_platform_device_count={num_devices}"))
  cmd = [sys.executable, "-m", "bench.gswgan_step", f"--sharded_only={num_devices}",
         f"--chunk={chunk}", f"--iters={iters}"]
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  if out.returncode:
    print(out.stderr[-2000:], file=sys.stderr)
    return None
  return float(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------- PyTorch --

def torch_iteration_ms(generator: str, iters: int, device: str = "cpu"):
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from torch import nn  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  sn = nn.utils.spectral_norm
  torch.manual_seed(0)

  def pixel_norm(h):
    return h * torch.rsqrt(torch.mean(h * h, dim=1, keepdim=True) + 1e-8)

  class DCGAN(nn.Module):
    def __init__(self, dim=64):
      super().__init__()
      self.fc = nn.Linear(20, 4 * 4 * 4 * dim)
      self.d1 = nn.ConvTranspose2d(4 * dim, 2 * dim, 5)
      self.d2 = nn.ConvTranspose2d(2 * dim, dim, 5)
      self.d3 = nn.ConvTranspose2d(dim, 1, 8, stride=2)

    def forward(self, z, y):
      h = self.fc(torch.cat([z, nn.functional.one_hot(y, 10).float()], 1))
      h = pixel_norm(torch.relu(h.view(-1, 256, 4, 4)))
      h = pixel_norm(torch.relu(self.d1(h)[:, :, :7, :7]))
      h = pixel_norm(torch.relu(self.d2(h)))
      return torch.sigmoid(self.d3(h))

  class Up(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.c1, self.c2 = sn(nn.Conv2d(c, c, 3, padding=1)), sn(nn.Conv2d(c, c, 3, padding=1))
      self.sc = sn(nn.Conv2d(c, c, 1))

    def forward(self, x):
      up = lambda t: nn.functional.interpolate(t, scale_factor=2, mode="nearest")
      h = self.c2(torch.relu(pixel_norm(self.c1(up(pixel_norm(x))))))
      return h + self.sc(up(x))

  class ResNet(nn.Module):
    def __init__(self, c=256):
      super().__init__()
      self.fc = sn(nn.Linear(20, 4 * 4 * c))
      self.blocks = nn.Sequential(Up(c), Up(c), Up(c))
      self.out = sn(nn.Conv2d(c, 1, 3))

    def forward(self, z, y):
      h = self.fc(torch.cat([z, nn.functional.one_hot(y, 10).float()], 1))
      h = pixel_norm(torch.relu(h.view(-1, 256, 4, 4)))
      return torch.sigmoid(self.out(self.blocks(h))[:, :, 1:29, 1:29])

  class Disc(nn.Module):
    def __init__(self, dim=64):
      super().__init__()
      self.c = nn.ModuleList([sn(nn.Conv2d(a, b, 5, 2, 2)) for a, b in
                              ((1, dim), (dim, 2 * dim), (2 * dim, 4 * dim))])
      self.fc = sn(nn.Linear(4096, 1))
      self.embed = sn(nn.Embedding(10, 4096))

    def forward(self, x, y):
      h = x
      for conv in self.c:
        h = torch.relu(conv(h))
      h = h.flatten(1)
      return self.fc(h)[:, 0] + (self.embed(y) * h).sum(1)

  dev = torch.device(device)
  G = (DCGAN() if generator == "dcgan" else ResNet()).to(dev)
  D = Disc().to(dev)
  opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.5, 0.9))
  opt_d = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.5, 0.9))
  xs = torch.rand(N_CRITIC, B, 1, 28, 28, device=dev)
  ys = torch.randint(0, 10, (N_CRITIC, B), device=dev)
  half = lambda n: torch.full((n, 10), 0.5, device=dev)
  sigma, bound = 1.07, 1.0 / B

  def sanitize_hook(grad):
    flat = grad.reshape(B, -1)
    coef = torch.clamp(bound / (flat.norm(dim=1, keepdim=True) + 1e-10), max=1.0)
    return (flat * coef + 2 * sigma * bound * torch.randn_like(flat)).view_as(grad)

  def iteration():
    # Same algorithm as the JAX step: one G call for the critic phase's fakes,
    # real and fake scored in one critic forward pass.
    with torch.no_grad():
      fakes = G(torch.bernoulli(half(N_CRITIC * B)), ys.reshape(-1))
    for i in range(N_CRITIC):
      real, y, fake = xs[i], ys[i], fakes[i * B:(i + 1) * B]
      opt_d.zero_grad(set_to_none=True)
      scores = D(torch.cat([real, fake]), torch.cat([y, y]))
      d_real, d_fake = scores[:B], scores[B:]
      a = torch.rand(B, 1, 1, 1, device=dev)
      x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
      grad = torch.autograd.grad(D(x_hat, y).sum(), x_hat, create_graph=True)[0]
      gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
      loss = d_fake.mean() - d_real.mean() + 10 * gp + 1e-3 * (d_real ** 2).mean()
      loss.backward()
      opt_d.step()
    opt_g.zero_grad(set_to_none=True)
    y = torch.randint(0, 10, (B,), device=dev)
    fake = G(torch.bernoulli(half(B)), y)
    fake.register_hook(sanitize_hook)
    (-D(fake, y).mean()).backward()
    opt_g.step()
    if dev.type == "cuda":
      torch.cuda.synchronize()

  return _best(iteration, iters)


def main(argv):
  del argv
  if _SHARDED_ONLY.value:
    print(sharded_warmstart_ms(_CHUNK.value, _ITERS.value, _SHARDED_ONLY.value))
    return
  print(f"GS-WGAN iteration: B={B}, {N_CRITIC} critic steps + 1 sanitized generator step "
        f"({jax.devices()[0].platform}, jax {jax.__version__}); best of 3 repeats, ms")
  print(f"| {'generator':9s} | {'jax':>8s} | {'pytorch':>8s} | {'jax/pt':>6s} | "
        f"{'G priv':>7s} | {'G plain':>7s} | {'priv/plain':>10s} |")
  print("|" + "|".join("-" * w for w in (11, 10, 10, 8, 9, 9, 12)) + "|")
  for name in _GENERATORS.value:
    j = jax_times(name, _ITERS.value)
    t = torch_iteration_ms(name, _ITERS.value, _TORCH_DEVICE.value) if _TORCH.value else None
    ratio = f"{j['iteration'] / t:6.2f}" if t else "   n/a"
    print(f"| {name:9s} | {j['iteration']:8.0f} | {t if t else float('nan'):8.0f} | {ratio} | "
          f"{j['gen_private']:7.1f} | {j['gen_plain']:7.1f} | "
          f"{j['gen_private'] / j['gen_plain']:10.2f} |", flush=True)
  w = warmstart_times(_CHUNK.value, max(1, _ITERS.value // 2), _WARM_GENERATOR.value,
                      _UNROLLED.value, _WARM_VMAP.value)
  print(f"\nStage-1 warm-start, chunk of {_CHUNK.value} {_WARM_GENERATOR.value} pairs, "
        "ms per chunk iteration:")
  print(f"| vmap {w['vmap']:.0f} | sequential {w['sequential']:.0f} | "
        f"unrolled {w['unrolled']:.0f} | sequential per pair "
        f"{w['sequential'] / _CHUNK.value:.1f} | throughput vs sequential: vmap "
        f"{w['sequential'] / w['vmap']:.2f}x, unrolled {w['sequential'] / w['unrolled']:.2f}x |")
  if _BANK_K.value:
    b = bank_step_times(_WARM_GENERATOR.value, _BANK_K.value, _BANK_STEPS.value)
    print(f"\nStage 2 with a bank of {_BANK_K.value} discriminators ({b['mb']:.1f} MB each) "
          f"on disk, a quarter cached; {_WARM_GENERATOR.value} generator, ms per step:")
    print(f"| no bank (compute) {b['bare']:.1f} | all in memory {b['memory']:.1f} | "
          f"synchronous files {b['sync']:.1f} | write-behind + prefetch {b['async']:.1f} | "
          f"memory/bare {b['memory'] / b['bare']:.2f}x | sync/async {b['sync'] / b['async']:.2f}x |")
  times = {int(n): _sharded_in_subprocess(_CHUNK.value, max(1, _ITERS.value // 2), int(n))
           for n in _DEVICES.value}
  if times:
    base = times.get(1)
    print("\nvmapped chunk sharded over simulated CPU devices (same host cores):")
    for n, t in times.items():
      speed = f"{base / t:.2f}x vs 1 device" if base and t else "n/a"
      print(f"| {n} device(s) | {t if t else float('nan'):.0f} ms per chunk iteration | {speed} |")


if __name__ == "__main__":
  app.run(main)
