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
  cmnist10_p95    Colored MNIST, 10 classes, source colour in the class band
                  with probability 0.95; the paper's recipe (MLP 1568-128-64,
                  SGD lr 0.03 momentum 0.9 wd 0.002, 30 epochs of batch 64;
                  then 300 full-batch steps of entropy minimisation, and
                  pseudo-labelling in 3 and 6 rounds), the improved recipe
                  (hard pseudo-labels relabelled every 3 steps, 100 rounds;
                  "best") and a colour-blind oracle. Paper: 82% -> 91% (one
                  fortunate seed; the authors' script averages 81.95% ->
                  83.89% over six seeds here). Measured (5 seeds): source
                  81.19%, entropy 81.36%, improved 89.77%, oracle 96.87%.
  cmnist10_p97    the same at p = 0.97 (paper: 72% -> 67%, self-training
                  hurts). Measured: source 71.54%, entropy 64.04%, improved
                  76.42%.
  cmnist2         binary (digit < 5), Gaussian colours (paper: 94% -> 96%).
                  Measured: source 88.17%, entropy 92.70%, improved 93.27%.
  celeba          CelebA, gender with blond hair as the spurious feature:
                  source = blond males + dark females only (1,250 / 1,749),
                  target = the natural mix (57,803), 32x32 images in [-1, 1],
                  small CNN, Adam lr 1e-4 + weight decay 0.002, 300 source
                  epochs, then 100 epochs of source CE + 1.0 x target entropy.
                  Paper: 81% -> 88%. Needs the CelebA files (see
                  jaxtiny/data/celeba.py) under $JAXTINY_DATA/celeba or
                  --config.celeba_dir, or TFDS celeb_a prepared under
                  $TFDS_DATA_DIR / --config.tfds_dir; a GPU-scale run (about 100,000 steps
                  per seed), not measured here.
  smoke           the toy with a few hundred steps (tests).
Append ',smoke' to a Colored MNIST variant (or to celeba: a tiny CelebA-format
folder, tests) for a seconds-long run on 2,000
examples per split (tests), e.g. 'cmnist10_p95,smoke'.
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
CMNIST_VARIANTS = {"cmnist10_p95": (10, 0.95), "cmnist10_p97": (10, 0.97),
                   "cmnist2": (2, 0.95)}


def _cmnist(variant: str, smoke: bool) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.variant = variant + (",smoke" if smoke else "")
  c.kind = "cmnist"
  c.data_dir = ""
  c.seed = 0
  c.seeds = 5
  c.num_classes, c.p = CMNIST_VARIANTS[variant]
  c.model = ml_collections.ConfigDict({"hidden": (128, 64)})
  c.optim = ml_collections.ConfigDict(
      {"learning_rate": 0.03, "momentum": 0.9, "weight_decay": 0.002})
  c.source_epochs = 30
  c.batch_size = 64
  c.self_train_steps = 300
  c.pl_rounds = (3, 6)      # The paper-style schedules reported beside it.
  # The improved recipe ("best" in results.json), fixed in advance and used
  # as is in every variant; its last iterate is reported (no model
  # selection, so no target labels): hard pseudo-labels on every target
  # image, relabelled every `steps_per_round` full-batch steps.
  c.improved = ml_collections.ConfigDict({
      "name": "pseudo_label_100", "rounds": 100, "steps_per_round": 3,
      "threshold_kind": "none", "threshold": 0.0, "source_weight": 0.0})
  c.max_examples = 0        # >0: truncate every split (smoke runs).
  if smoke:
    c.seeds = 2
    c.max_examples = 2000
    c.source_epochs = 2
    c.self_train_steps = 30
    c.improved.rounds, c.improved.steps_per_round = 6, 5
  return c.lock()


def _celeba(smoke: bool) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.variant = "celeba" + (",smoke" if smoke else "")
  c.kind = "celeba"
  c.data_dir = ""
  c.celeba_dir = ""          # Default: $JAXTINY_DATA/celeba.
  # Prepared TFDS celeb_a, used when the official files are absent. Default:
  # $TFDS_DATA_DIR, else ~/tensorflow_datasets.
  c.tfds_dir = ""
  c.seed = 0
  c.seeds = 5
  c.label = "Male"
  c.spurious = "Blond_Hair"
  # (label, spurious, count): the paper's groups; -1 takes a whole group.
  c.source_groups = ((1, 1, 1250), (0, 0, 1749))
  c.target_groups = ((0, 0, 25658), (1, 0, 23591), (0, 1, 8055), (1, 1, 499))
  c.image_size = 32
  c.channels = (32, 64, 128, 256)
  c.learning_rate = 1e-4
  c.weight_decay = 0.002
  c.batch_size = 64
  c.source_epochs = 300
  c.self_train_epochs = 100
  c.entropy_weight = 1.0
  if smoke:
    c.seeds = 2
    c.source_groups = ((1, 1, 4), (0, 0, 4))
    c.target_groups = ((0, 0, 3), (1, 0, 3), (0, 1, 3), (1, 1, 3))
    c.channels = (8, 16)
    c.batch_size = 4
    c.source_epochs = 3
    c.self_train_epochs = 2
  return c.lock()


def get_config(arg: str = "toy") -> ml_collections.ConfigDict:
  parts = (arg or "toy").split(",")
  variant = parts[0]
  if variant in CMNIST_VARIANTS:
    return _cmnist(variant, smoke="smoke" in parts[1:])
  if variant == "celeba":
    return _celeba(smoke="smoke" in parts[1:])
  if variant not in TOY_VARIANTS:
    raise ValueError(f"unknown selftrain variant {variant!r}; implemented: "
                     f"{', '.join(TOY_VARIANTS + tuple(CMNIST_VARIANTS))}, "
                     "celeba")
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
