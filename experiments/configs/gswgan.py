"""GS-WGAN: differentially private conditional generator (centralized).

Variants (the part after ':'):
  mnist, fashion_mnist  paper settings for a GPU/TPU: ResNet generator, K=1000
      discriminators (60 examples each) warm-started for 2000 iterations,
      20,000 private generator steps, B=32, sigma=1.07, C=1, delta=1e-5.
      Paper epsilon ("paper" accountant): 9.99. Expected time on one H200
      (measured rates, BUILD_NOTES): ~6 h, 98% of it stage 1 (10.8 ms per
      discriminator-iteration), stage 2 ~22 ms per step.
  cpu   DCGAN generator, K=10 discriminators (6,000 examples each) warm-started
      for 30 iterations, 2,000 private steps at sigma=0.5 (half the paper's
      noise), EMA cap 0.995. Measured: 26 minutes end to end on 2 CPU cores
      while sharing the machine with tests (earlier code: 73 minutes),
      epsilon 2.48e5 (strict) / 4.7e4 (paper) at delta=1e-5 -- vacuous:
      K=10 gives almost no amplification by subsampling. Result: recognisable class-conditional
      digits (docs/gswgan_cpu_samples.png; scores in BUILD_NOTES.md).
  smoke a few steps with 4 tiny shards (tests).
Append ',fashion_mnist' to cpu/smoke to switch dataset, e.g. 'cpu,fashion_mnist'.

Run:
  python -m experiments.gswgan --config=experiments/configs/gswgan.py:cpu \
      --workdir=runs/gswgan_cpu [--config.dp.noise_multiplier=1.2]
Outputs in the workdir: metrics.jsonl, samples_<step>.png (one row per class),
privacy.json (the ledger), checkpoints/, bank/, and gen_data.npz (60,000
samples from the EMA generator) for `python -m experiments.evaluate`.
"""

import ml_collections


def get_config(arg: str = "cpu") -> ml_collections.ConfigDict:
  parts = (arg or "cpu").split(",")
  variant = parts[0]
  c = ml_collections.ConfigDict()
  c.dataset = "mnist"
  c.data_dir = ""
  c.seed = 0
  c.generator = "resnet"          # "resnet" or "dcgan".

  # Privacy-relevant settings.
  c.dp = ml_collections.ConfigDict()
  c.dp.noise_multiplier = 1.07    # sigma; 0 trains non-privately (rescaled grads).
  c.dp.clip_norm = 1.0            # C; per-example bound is C/B.
  c.dp.delta = 1e-5
  c.dp.accountant = "strict"      # "strict" (sound) or "paper" (authors' figure).
  c.dp.target_epsilon = 0.0       # > 0: stop before exceeding it.
  c.dp.calibrate = False          # True: choose sigma so T steps meet target_epsilon.
  c.num_discriminators = 1000     # K disjoint shards.
  c.batch_size = 32               # B.
  c.num_steps = 20000             # T private generator steps.

  # Performance-only settings.
  c.n_critic = 5
  c.gp_weight = 10.0
  c.drift = 1e-3
  c.learning_rate = 1e-4
  c.betas = (0.5, 0.9)
  c.ema_decay = 0.999             # Cap of the released generator's EMA decay.
  c.warmup_iterations = 2000      # Stage-1 iterations per discriminator.
  c.warmup_chunk = 50             # Discriminators trained per call.
  # "vmap" (stacked chunk, shards over devices), "sequential" (one pair at a
  # time: on one H100 13 ms per pair-iteration against 18 ms under vmap; on
  # an H200, 10.8 ms -- BUILD_NOTES), "unrolled" (one program, every pair's
  # step), or "auto": sequential on one device, vmap on several.
  c.warmup_mode = "auto"
  c.num_devices = 0               # Devices the warm-start chunk is sharded over.
  # Discriminators kept in memory, on the device that trains them; the rest
  # streams from disk. 4 GB fits small cards; on one with >= 40 GB,
  # --config.bank_cache_mb=16384 holds the whole 13 GB bank (an H200 step:
  # 16.9 ms all cached vs 22.4 ms with a quarter cached -- BUILD_NOTES).
  c.bank_cache_mb = 4096
  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000
  c.sample_every_steps = 1000
  c.num_gen_samples = 60000
  c.progress_interval_s = 10.0

  if variant in ("mnist", "fashion_mnist"):
    c.dataset = variant
  elif variant == "cpu":
    # Reduced for 2 CPU cores (about an hour): DCGAN generator, K=10 shards of
    # 6,000, 30 warm-start iterations each, 2,000 private steps, and half the
    # paper's noise (sigma=0.5; at 1.07 the generator had not left its
    # collapsed start after 400 steps, at 0.5 it had started to vary by 500).
    # The EMA cap is 0.995 (~200-step window) so the released generator does
    # not average in the first, collapsed iterates of such a short run.
    c.generator = "dcgan"
    c.warmup_mode = "sequential"
    c.num_discriminators = 10
    c.warmup_iterations = 30
    c.warmup_chunk = 2
    c.num_steps = 2000
    c.dp.noise_multiplier = 0.5
    c.ema_decay = 0.995
    c.log_every_steps = 20
    c.checkpoint_every_steps = 200
    c.sample_every_steps = 200
  elif variant == "smoke":
    c.generator = "dcgan"
    c.warmup_mode = "sequential"
    c.num_discriminators = 4
    c.warmup_iterations = 2
    c.warmup_chunk = 2
    c.num_steps = 6
    c.n_critic = 2
    c.batch_size = 8
    c.log_every_steps = 2
    c.checkpoint_every_steps = 3
    c.sample_every_steps = 3
    c.num_gen_samples = 200
    c.bank_cache_mb = 16
  else:
    raise ValueError(f"unknown gswgan variant {variant!r}; use mnist, "
                     "fashion_mnist, cpu or smoke.")
  if "fashion_mnist" in parts[1:]:
    c.dataset = "fashion_mnist"
  return c.lock()


def get_sweep(arg: str = "cpu") -> list[dict]:
  """Points of a privacy-utility curve for `python -m experiments.sweep`.

  Paper variants: sigma calibrated so that all 20,000 steps meet each target
  epsilon (1, 2, 5, 10, 20; configured accountant), 3 seeds each. `cpu`: three
  noise multipliers (about an hour each; epsilon as it comes out -- a target
  epsilon of 1-20 leaves nothing learnable at CPU scale). `smoke`: two tiny
  points (tests).
  """
  variant = (arg or "cpu").split(",")[0]
  if variant == "smoke":
    return [{"dp.noise_multiplier": s} for s in (0.5, 1.0)]
  if variant == "cpu":
    return [{"dp.noise_multiplier": s} for s in (0.25, 0.5, 1.0)]
  return [{"dp.target_epsilon": e, "dp.calibrate": True, "seed": seed}
          for e in (1.0, 2.0, 5.0, 10.0, 20.0) for seed in (0, 1, 2)]
