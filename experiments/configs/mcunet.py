"""TinyNAS (MCUNet) on Fashion-MNIST: search-space optimisation, elastic
supernet, memory-constrained evolutionary search, and a scaled MobileNetV2
baseline under the same budgets.

Variants (the part after ':'):
  cpu    the numbers in BUILD_NOTES.md: both budgets (SRAM 32 kB / Flash
         256 kB and 64 kB / 512 kB), W x R grid {0.2..0.8} x {32..64}, 1,000
         samples per space, premise check on 4 spaces of the first budget,
         a 3-phase supernet (full -> kernel -> depth+expand), search with
         population 32 for 4 generations, and searched-vs-MobileNetV2 trained
         from scratch with one recipe. Reduced from the paper for 2 CPU cores:
         batch 64, 1,500-step trainings, a 20,000-image supernet subset,
         1,000-image search validation, 3 seeds per final model at 32 kB
         and 1 at 64 kB. Expected (three runs measured; the last two
         identical, the code being deterministic): at 32 kB the searched net
         beats the scaled MobileNetV2 by +1.2 to +1.4 points in the 3-seed
         mean (87.73 vs 86.50 %, 87.92 vs 86.52 %; the issue's +1 point
         target); at 64 kB, no target: 88.30 vs 88.70 % with seed 0 alone
         (-0.40), 88.95 vs 88.48 % (+0.47) in a 3-seed mean. Wall time 1 h
         01 min on 2 cores (1 h 58 min with 3 seeds at both budgets on
         cores shared with other work).
  deploy the `cpu` variant plus TinyEngine deployment of each budget's final
         models (searched and scaled MobileNetV2, seed 0): int8
         quantization, memory plan within the SRAM budget, generated C code
         compiled and run on the whole test set (bit-exact with the integer
         reference), the interpreter baseline, a Cortex-M7 build; writes
         deploy.md / deploy.png / deploy.json. Run it on a finished `cpu`
         workdir and only the deployment runs.
  paper  the same pipeline at the paper's search settings for an
         accelerator: population 100, 20 generations, all four
         progressive-shrinking phases, full data and longer training.
  smoke  seconds-scale end-to-end run on a tiny space, deployment included
         (tests).

Run:
  python -m experiments.mcunet --config=experiments/configs/mcunet.py:cpu \
      --workdir=runs/mcunet_cpu
Outputs in the workdir: stage1_<budget>.json and space_cdf_<budget>.png,
premise.json/png, supernet_<budget>.npz (per phase, resumable),
search_<budget>.jsonl, searched_<budget>.json (architecture),
results.json, results.md.
"""

import ml_collections


def get_config(arg: str = "cpu") -> ml_collections.ConfigDict:
  variant = (arg or "cpu").split(",")[0]
  c = ml_collections.ConfigDict()
  c.dataset = "fashion_mnist"
  c.data_dir = ""
  c.seed = 0
  c.num_devices = 0
  c.val_size = 5000                 # Held out from train for the search.

  # Budgets: (SRAM bytes, Flash bytes); SRAM is checked against the profiler's
  # MCUNet-rule peak activation.
  c.budgets = ((32 * 1024, 256 * 1024), (64 * 1024, 512 * 1024))
  c.sram_metric = "peak_activation_bytes"

  # Stage 1: search-space optimisation.
  c.space = ml_collections.ConfigDict()
  c.space.width_mults = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
  c.space.resolutions = (32, 40, 48, 56, 64)
  c.space.kernels = (3, 5, 7)
  c.space.expands = (3, 4, 5, 6)
  c.space.depths = (2, 3, 4)
  c.space.num_samples = 1000
  c.space.min_fit_fraction = 0.1

  # Premise check: briefly train subnets of a few spaces of the first budget.
  c.premise = ml_collections.ConfigDict()
  c.premise.num_spaces = 4
  c.premise.subnets_per_space = 2
  c.premise.steps = 200
  c.premise.train_size = 20000

  # Training recipe (every network).
  c.recipe = ml_collections.ConfigDict()
  c.recipe.batch_size = 64
  c.recipe.learning_rate = 0.05
  c.recipe.warmup_steps = 50
  c.recipe.weight_decay = 4e-5
  c.recipe.label_smoothing = 0.1
  c.recipe.kd_weight = 1.0

  # Supernet: progressive shrinking phases (name, steps); "depth" and "expand"
  # may be merged as "expand" (everything elastic).
  c.supernet = ml_collections.ConfigDict()
  c.supernet.phases = (("full", 600), ("kernel", 300), ("expand", 600))
  c.supernet.train_size = 20000
  c.supernet.elastic_resolution = False   # True: R-8, R, R+8 per batch.

  # Evolutionary search.
  c.search = ml_collections.ConfigDict()
  c.search.population = 32
  c.search.parent_ratio = 0.25
  c.search.mutation_ratio = 0.5
  c.search.mutate_prob = 0.1
  c.search.generations = 4
  c.search.calib_size = 500               # BN recalibration images.
  c.search.val_size = 1000                # Scoring images (from the val split).

  # Final models: the searched net and the scaled MobileNetV2, from scratch
  # with the same recipe; plus the searched net fine-tuned from the supernet.
  c.final = ml_collections.ConfigDict()
  c.final.steps = 1500
  # From-scratch trainings per model (mean reported), one count per budget:
  # three where the issue sets its +1-point target (32 kB; one seed's margin
  # ranged +0.36 to +1.03 over two runs), one at 64 kB (no target), which
  # keeps the variant near the 90 minutes (3 + 3 seeds: 1 h 58 min).
  c.final.seeds = (3, 1)
  c.final.finetune_steps = 500
  c.final.finetune_lr = 0.02
  c.final.mbv2_width_mults = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6,
                              0.75, 1.0)

  # TinyEngine deployment of the final models (the `deploy` variant).
  c.deploy = ml_collections.ConfigDict()
  c.deploy.enabled = False
  c.deploy.models = ("searched", "mbv2")
  c.deploy.calib = 1000                   # Calibration training images.
  c.deploy.method = "minmax"
  c.deploy.test_images = 0                # 0: the whole test set.
  c.deploy.timing_images = 200

  c.log_every_steps = 50
  c.progress_interval_s = 10.0

  if variant == "cpu":
    pass
  elif variant == "deploy":
    c.deploy.enabled = True
  elif variant == "paper":
    c.space.width_mults = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    c.premise.num_spaces = 5
    c.premise.subnets_per_space = 4
    c.premise.steps = 3000
    c.premise.train_size = 55000
    c.recipe.batch_size = 128
    c.recipe.learning_rate = 0.1
    c.supernet.phases = (("full", 20000), ("kernel", 10000), ("depth", 10000),
                         ("expand", 20000))
    c.supernet.train_size = 55000
    c.supernet.elastic_resolution = True
    c.search.population = 100
    c.search.generations = 20
    c.search.calib_size = 2000
    c.search.val_size = 5000
    c.final.steps = 20000
    c.final.seeds = (3, 3)
    c.final.finetune_steps = 5000
  elif variant == "smoke":
    c.budgets = ((24 * 1024, 160 * 1024),)
    c.space.width_mults = (0.2, 0.3)
    c.space.resolutions = (28, 32)
    c.space.kernels = (3, 5)
    c.space.expands = (2, 3)
    c.space.depths = (1, 2)
    c.space.num_samples = 50
    c.premise.num_spaces = 2
    c.premise.subnets_per_space = 1
    c.premise.steps = 3
    c.premise.train_size = 256
    c.recipe.batch_size = 32
    c.recipe.warmup_steps = 2
    c.supernet.phases = (("full", 3), ("kernel", 2), ("expand", 3))
    c.supernet.train_size = 256
    c.search.population = 6
    c.search.generations = 2
    c.search.calib_size = 64
    c.search.val_size = 64
    c.final.steps = 4
    c.final.seeds = (1,)
    c.final.finetune_steps = 2
    c.final.mbv2_width_mults = (0.1, 0.15, 0.2)
    c.val_size = 200
    c.deploy.enabled = True
    c.deploy.calib = 64
    c.deploy.test_images = 100
    c.deploy.timing_images = 20
    c.log_every_steps = 2
  else:
    raise ValueError(f"unknown mcunet variant {variant!r}; use cpu, deploy, "
                     "paper or smoke.")
  return c.lock()
