"""Federated GS-WGAN (user-level DP) against the DP-FedAvg-GAN baseline.

Variants (the part after ':'), each optionally followed by ',non_iid' or ',iid':
  emnist  the paper's setting for a GPU/TPU: real Federated EMNIST digits
      (TFF HDF5 files in <data_dir>/fed_emnist/), one user per writer
      (3,383), ResNet generator, B=32 samples per user, Poisson sampling of
      ~50 users per round, 20,000 rounds; GS-WGAN at sigma=1.07 (epsilon 14.1
      by our user-level accountant), the baseline at sigma=0.0317, the noise at
      which its epsilon is the paper's 9.99e6. Paper (Fed-EMNIST): GS-WGAN IS
      11.25, FID 60.76, epsilon 5.99e2, ~1.5e5 bytes per round per user;
      FedAvg-GAN IS 10.88, FID 218.24, epsilon 9.99e6, ~3.94e7 bytes.
  cpu     MNIST split into 20 users (IID by default), DCGAN generator,
      Poisson sampling at q=0.1 (2 users per round on average), 25 local
      warm-start iterations per GS-WGAN user, 5 critic steps per
      participation, 1,000 rounds for each method, user-side noise. Each
      method at the settings where it learns best at this scale (the paper
      runs its baseline at epsilon ~1e7 likewise): GS-WGAN at sigma=0.03
      (epsilon 5.9e5) with its users' critics at Adam rate 3e-4 (since
      session 43), DP-FedAvg-GAN at sigma=0.01 (epsilon 5.5e6; at 0.2 and
      0.5 it learned nothing in 1,000 rounds) with its critic at the
      generators' 1e-4 (at 2e-4 it scored worse on every column). Both
      epsilons are vacuous at 20 users.
      Measured (quick-look suite; README "Federated GS-WGAN"), mean over
      --config.seed=0, 1 (each seed its own partition): IID, GS-WGAN IS
      7.84 / FID 161 / label accuracy 0.81 / MLP 0.80 / CNN 0.83 / Avg
      0.68 / Calibrated 79.3 % against the baseline's 5.41 / 445 / 0.66 /
      0.74 / 0.77 / 0.62 / 72.9 % (every margin beyond both seed spreads);
      non-IID, 6.12 / 337 / 0.67 / 0.74 / 0.76 / 0.629 / 73.6 % against
      5.01 / 489 / 0.64 / 0.73 / 0.75 / 0.625 / 73.2 %: ahead on every
      column on both partitions, on non-IID Avg and Calibrated by less
      than one sd (seed 1 alone trails there by 0.016 and 1.9 points).
      At the earlier 2e-4 (sessions
      41-42, --config.critic_learning_rate=2e-4) GS-WGAN led on every
      column on IID users (two seeds each) and trailed on non-IID Avg
      and Calibrated. With --config.n_critic=10 for both (twice the local
      compute, at critic rate 1e-4) GS-WGAN led on every column on both
      partitions (two seeds each).
      Time (2 cores, both methods and the suite): 31 min 24 s in session 19;
      56 min 31 s in session 40 and 64 min 36 s in session 45, when the
      host ran the same benchmark iteration ~2x slower (session 45:
      GS-WGAN 35.5 min with its 7-min warm start, the baseline 29 min,
      ~1.5 min of suite each); the critic rate changes no compute.
      GS-WGAN's critics stepped at 1e-4 until session 41 and at 2e-4 in
      sessions 41-42 (--config.critic_learning_rate restores either; at
      1e-4: IS 9.42 / FID 197 / MLP 0.69 / Avg 0.60, little variety
      within a class), and until session 40 its sigma was 0.1
      (--config.dp.noise_multiplier=0.1).
  smoke   seconds, for tests.

Run:
  python -m experiments.gswgan_federated \
      --config=experiments/configs/gswgan_federated.py:cpu,non_iid \
      --workdir=runs/gswgan_fed_cpu [--config.dp.noise_multiplier=1.0 ...]
Payload: --config.wire=compact sends every float (gradients, updates,
weights) as bfloat16 and the generated images as uint8, for both methods
(default float32, the paper's counting). Measured with B=32: DCGAN generator
GS-WGAN 75,296 B / user / round against the baseline's 8,750,740 (116x;
float32: 87x).

Outputs: results.json (partition, users, rounds, wire, seed, critic steps,
generator output, and per method the upload and download bytes per user per
round, epsilon, delta, the sample-quality
scores and the evaluation suite's MLP / CNN / Avg / Calibrated accuracies and
the generated background on the real test set's blank pixels:
`eval_suite` "fast" in cpu, about 2 minutes per method, "full" in emnist,
about an hour per method on 2 CPU cores), partition.npz, and per method a
directory with checkpoints, metrics.jsonl, samples_<round>.png, curves.png
(critic Wasserstein estimate and epsilon against rounds, redrawn at each
checkpoint), privacy.json, gen_data.npz (for `python -m experiments.evaluate`)
and eval/eval.json; the workdir's curves.png shows all its methods.
"""

import ml_collections


def get_config(arg: str = "cpu") -> ml_collections.ConfigDict:
  parts = (arg or "cpu").split(",")
  variant = parts[0]
  c = ml_collections.ConfigDict()
  c.dataset = "mnist"               # "mnist", "fashion_mnist" or "fed_emnist".
  c.data_dir = ""
  c.seed = 0
  c.partition = "iid"               # "iid" or "non_iid" (ignored for fed_emnist).
  c.non_iid = ml_collections.ConfigDict()
  c.non_iid.dominant_share = 0.9    # Share of a user's records from its 1-2 classes.
  c.non_iid.size_sigma = 1.0        # Log-normal sigma of user sizes.
  c.non_iid.min_size = 8
  c.methods = ("gswgan", "fedavg_gan")
  c.generator = "dcgan"
  c.generator_output = "sigmoid"    # "sigmoid" (the paper's) or "hard_sigmoid" (exact
                                    # 0 / 1 reachable: black backgrounds, models.py).

  # Privacy-relevant settings.
  c.num_users = 20                  # U (fed_emnist: the first U writers; 0 = all).
  c.sampling = "poisson"            # "poisson" (rate q) or "fixed" (users_per_round).
  c.sampling_rate = 0.1
  c.users_per_round = 2
  c.rounds = 1000
  c.batch_size = 32                 # B samples per user per round.
  c.wire = "float32"                # "float32", or "compact": floats as bfloat16 and
                                    # images as uint8, for both methods (federated.py).
  c.dp = ml_collections.ConfigDict()
  c.dp.noise_multiplier = 0.5       # GS-WGAN sigma (noise std sigma*sqrt(B)*C/B).
  c.dp.clip_norm = 1.0              # C; per-sample bound C/B.
  c.dp.delta = 1e-5
  c.dp.target_epsilon = 0.0         # > 0: stop before exceeding it (GS-WGAN sigma).
  c.fedavg = ml_collections.ConfigDict()
  c.fedavg.noise_multiplier = 0.5   # sigma of the baseline (noise std sigma*S).
  c.fedavg.clip_norm = 0.1          # S, bound on a user's joint G+D update.
  c.fedavg.local_steps = 1          # Local iterations (n_critic D steps + 1 G step).
  c.fedavg.server_lr = 1.0
  c.fedavg.critic_learning_rate = 0.0  # Its users' local critic steps; 0 = learning_rate.

  # Performance-only settings.
  c.user_warmup_iterations = 25     # Local stage 1 per user (GS-WGAN; nothing is sent).
  c.label_weighting = "importance"  # Weight of received samples per label: "importance",
                                    # "held" or "frequency" (federated.label_weights).
  c.n_critic = 5
  c.gp_weight = 10.0
  c.drift = 1e-3
  c.learning_rate = 1e-4            # Adam, the generators' (and the critics' by default).
  c.critic_learning_rate = 0.0      # GS-WGAN users' critics; 0 = learning_rate.
  c.betas = (0.5, 0.9)
  c.ema_decay = 0.995
  c.user_mode = "sequential"        # "vmap" (accelerators) or "sequential" (CPU).
  c.user_chunk = 1                  # Users per call (vmap: a multiple of the devices).
  c.num_devices = 0
  # Discriminators kept in memory, on the device that trains them (an H100
  # holds the whole 13 GB bank; the rest streams from disk).
  c.bank_cache_mb = 4096
  c.log_every_rounds = 10
  c.checkpoint_every_rounds = 100
  c.sample_every_rounds = 100
  c.num_gen_samples = 10000
  c.evaluate = True                 # IS / FID / label accuracy of each generator.
  c.eval_samples = 10000
  c.eval_suite = "fast"             # The paper's suite (MLP / CNN / Avg): "", "fast", "full".
  c.eval_classifier = ""            # Reference LeNet; "" = <data_dir>/classifiers/<dataset>.npz.
  c.progress_interval_s = 10.0

  if variant == "emnist":
    c.dataset = "fed_emnist"
    c.num_users = 0
    c.generator = "resnet"
    c.sampling_rate = 50 / 3383
    c.rounds = 20000
    c.user_warmup_iterations = 200
    c.dp.noise_multiplier = 1.07
    c.fedavg.noise_multiplier = 0.0317
    c.ema_decay = 0.999
    c.user_mode = "vmap"
    c.user_chunk = 8
    c.checkpoint_every_rounds = 1000
    c.sample_every_rounds = 1000
    c.log_every_rounds = 100
    c.num_gen_samples = 60000
    c.eval_samples = 60000
    c.eval_suite = "full"
  elif variant == "cpu":
    c.dp.noise_multiplier = 0.03
    c.critic_learning_rate = 3e-4
    c.fedavg.noise_multiplier = 0.01
  elif variant == "smoke":
    c.num_users = 6
    c.sampling_rate = 0.5
    c.users_per_round = 2
    c.rounds = 4
    c.batch_size = 8
    c.n_critic = 2
    c.user_warmup_iterations = 1
    c.non_iid.min_size = 2
    c.log_every_rounds = 1
    c.checkpoint_every_rounds = 2
    c.sample_every_rounds = 2
    c.num_gen_samples = 100
    c.evaluate = False
    c.eval_samples = 100
    c.eval_suite = ""
    c.bank_cache_mb = 64
  else:
    raise ValueError(f"unknown gswgan_federated variant {variant!r}; use emnist, cpu "
                     "or smoke.")
  for p in parts[1:]:
    if p in ("iid", "non_iid"):
      c.partition = p
    elif p == "fixed":
      c.sampling = "fixed"
    else:
      raise ValueError(f"unknown option {p!r} in --config=...:{arg}; use iid, non_iid "
                       "or fixed.")
  return c.lock()
