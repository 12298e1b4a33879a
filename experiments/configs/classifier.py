"""Reference LeNet classifier for the evaluation suite.

Variants (the part after ':'):
  mnist          the CPU default: 5 epochs, Adam 1e-3 cosine, batch 128.
                 Expected: >= 99.0% test accuracy in about 10 minutes on 2 cores.
  fashion_mnist  same recipe on Fashion-MNIST. Expected: >= 90.0%.
  smoke          a few steps on a 512-example subset with a tiny net (tests).
Append ',paper' for the longer GPU/TPU recipe (20 epochs), e.g. 'mnist,paper'.

Run:
  python -m experiments.classifier --config=experiments/configs/classifier.py:mnist \
      --workdir=runs/classifier_mnist
"""

import ml_collections


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
  """Returns the locked config for variant `arg` ("<dataset>[,paper]" or "smoke")."""
  parts = (arg or "mnist").split(",")
  variant = parts[0]
  c = ml_collections.ConfigDict()
  c.dataset = "mnist" if variant == "smoke" else variant
  c.data_dir = ""           # "" means $JAXTINY_DATA or ~/.cache/jaxtiny.
  c.seed = 0
  c.num_train_examples = 0  # 0: the whole split.
  c.num_test_examples = 0

  c.model = ml_collections.ConfigDict()
  c.model.conv_features = (32, 64)
  c.model.hidden = 512
  c.model.dropout = 0.5

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "cosine"
  c.optimizer.weight_decay = 0.0
  c.optimizer.momentum = 0.9
  c.optimizer.decay_at = (0.8,)       # Fractions of training, for "step".
  c.optimizer.decay_factor = 0.1

  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = 5
  c.num_devices = 0         # 0: all local devices.
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 2
  c.progress_interval_s = 10.0
  c.save_reference = True   # Also write <data dir>/classifiers/<dataset>.npz.

  if variant == "smoke":
    c.num_train_examples = 512
    c.num_test_examples = 256
    c.model.conv_features = (4, 8)
    c.model.hidden = 32
    c.batch_size = 32
    c.eval_batch_size = 128
    c.num_epochs = 2
    c.log_every_steps = 4
    c.checkpoint_every_steps = 8
    c.save_reference = False
  elif variant not in ("mnist", "fashion_mnist"):
    raise ValueError(f"unknown classifier variant {variant!r}; use mnist, "
                     "fashion_mnist or smoke.")
  if "paper" in parts[1:]:
    c.num_epochs = 20
  return c.lock()
