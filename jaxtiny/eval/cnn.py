"""CNN accuracy: a LeNet trained on the generated set, tested on real data.

The paper's protocol: SGD lr 0.02, momentum 0.9, weight decay 1e-4, batch 128,
50 epochs, learning rate x0.1 at epoch 40, inputs normalised with the
training (here: generated) set's mean and std. The network is the reference
LeNet architecture (conv 32/64, 512 hidden, dropout 0.5). Training is the
reference classifier's loop (`jaxtiny.classifier.train.fit`): resumable from
its workdir, with progress and curves.
"""

from __future__ import annotations

from typing import Optional

import ml_collections

from jaxtiny import data
from jaxtiny.classifier import train as classifier_train
from jaxtiny.eval import generated as generated_lib

EPOCHS = 50
FAST_EPOCHS = 5


def cnn_config(dataset: str, epochs: int = EPOCHS) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.dataset = dataset
  c.data_dir = ""
  c.seed = 0
  c.num_train_examples = 0
  c.num_test_examples = 0
  c.model = ml_collections.ConfigDict(
      {"conv_features": (32, 64), "hidden": 512, "dropout": 0.5})
  c.optimizer = ml_collections.ConfigDict(
      {"name": "sgd", "learning_rate": 0.02, "momentum": 0.9, "weight_decay": 1e-4,
       "schedule": "step", "decay_at": (40 / 50,), "decay_factor": 0.1})
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = epochs
  c.num_devices = 0
  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 1
  c.progress_interval_s = 10.0
  c.save_reference = False
  return c.lock()


def cnn_accuracy(gen: generated_lib.GeneratedSet, dataset: str, workdir: str,
                 data_dir: Optional[str] = None, epochs: int = EPOCHS) -> float:
  """Real test-set accuracy of a LeNet trained on `gen` (resumes in workdir)."""
  config = cnn_config(dataset, epochs)
  test = data.load(dataset, "test", data_dir)
  result, _, _ = classifier_train.fit(config, workdir, (gen.x, gen.y), test,
                                      num_classes=10, desc="CNN on generated data")
  return float(result["test_accuracy"])
