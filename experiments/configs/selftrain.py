"""Self-training under domain shift (Chen, Wei, Kumar, Ma, NeurIPS 2020).

Variants (the part after ':'):
  toy             linear theory toy, d1 = d2 = 2, |c| = 2, spurious prob 0.8,
                  10,000 samples per domain; source logistic regression
                  (20,000 projected GD steps, lr 1e-3), then entropy
                  minimisation (10,000 steps, lr 1e-3; binary entropy and the
                  analysis's exp(-|t|)) and pseudo-labelling (200 rounds of 50
                  steps, |t| > 0.1), fresh target samples every step/round.
                  Expected: ||w2|| halves about every 2,000 entropy steps and
                  target accuracy reaches the Bayes direction's (~0.977).
  toy_bad_source  failure case (a): start from the purely spurious classifier
                  (w1 = 0); self-training keeps it (||w2|| stays 1, target
                  accuracy stays at chance).
  toy_isolated    failure case (b): 20 % of each class in a tight cluster at
                  x1 = 0; with the exp(-|t|) loss ||w2|| stops shrinking
                  at a positive value and the cluster stays misclassified.
  smoke           the toy with a few hundred steps (tests).
--config.seeds=N sets the number of vmapped seeds (default 5).

Run:
  python -m experiments.selftrain --config=experiments/configs/selftrain.py:toy \
      --workdir=runs/selftrain_toy
Outputs: results.json (per method: target accuracy and ||w2|| at start and end,
steps per halving, the boundary-density diagnostics and the trend they
predict), traces.npz and toy.png.
"""

import ml_collections

TOY_VARIANTS = ("toy", "toy_bad_source", "toy_isolated", "smoke")


def get_config(arg: str = "toy") -> ml_collections.ConfigDict:
  variant = arg or "toy"
  if variant not in TOY_VARIANTS:
    raise ValueError(f"unknown selftrain variant {variant!r}; implemented: "
                     f"{', '.join(TOY_VARIANTS)} (Colored MNIST and CelebA are not "
                     "implemented yet)")
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.kind = "toy"
  c.seed = 0
  c.seeds = 5
  c.methods = ("entropy", "entropy_exp", "pseudo_label")
  c.track_every = 10        # Entropy steps between recorded points.
  c.chunk = 1000            # Steps per compiled call (progress in between).
  c.progress_interval_s = 10.0
  # Fields of jaxtiny.selftrain.toy.ToySpec.
  c.toy = ml_collections.ConfigDict(dict(
      d1=2, d2=2, signal_norm=2.0, spurious_prob=0.8, num_samples=10_000,
      isolated_fraction=0.0, isolated_scale=0.1,
      source_steps=20_000, source_lr=1e-3, init="random", bad_source_w1=0.0,
      em_steps=10_000, em_lr=1e-3, pl_rounds=200, pl_steps=50, pl_threshold=0.1,
      pl_lr=1e-3))
  if variant == "toy_bad_source":
    c.toy.init = "spurious"
  elif variant == "toy_isolated":
    c.toy.isolated_fraction = 0.2
  elif variant == "smoke":
    c.seeds = 2
    c.toy.num_samples = 2000
    c.toy.source_steps = 3000
    c.toy.em_steps = 400
    c.toy.em_lr = 1e-2
    c.toy.pl_rounds = 8
    c.toy.pl_steps = 20
    c.toy.pl_lr = 1e-2
    c.chunk = 200
  return c.lock()
