"""Inception Score and FID (LeNet features) of a generated set.

Both use the dataset's reference classifier (`jaxtiny.classifier.reference`):
IS from its logits, FID from its penultimate (hidden-layer) features, with the
reference statistics computed once from the real training set and cached next
to the classifier (keyed by the classifier file's hash, so retraining the
classifier invalidates them).
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Optional

import jax
import numpy as np

from jaxtiny import data
from jaxtiny import fileio
from jaxtiny.classifier import reference
from jaxtiny.eval import generated as generated_lib
from jaxtiny.eval import metrics

IS_SAMPLES = 60_000   # The paper's protocol: 60,000 samples, 10 splits.
IS_SPLITS = 10
FID_SAMPLES = 20_000  # Generated samples for FID; reference = full train set.


def classifier_outputs(clf: reference.ReferenceClassifier, images: np.ndarray,
                       batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
  """(logits [N, C], features [N, hidden]) of `images` in batches."""
  fn = jax.jit(clf.logits_and_features)
  size = min(batch, len(images))
  logits, feats = [], []
  for i in range(0, len(images), size):
    part = images[i:i + size]
    k = len(part)
    if k < size:  # Pad the last batch: one compiled shape.
      part = np.concatenate([part, np.zeros((size - k,) + part.shape[1:], part.dtype)])
    lg, ft = fn(part)
    logits.append(np.asarray(lg)[:k])
    feats.append(np.asarray(ft)[:k])
  return np.concatenate(logits), np.concatenate(feats)


def _file_hash(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def reference_statistics(dataset: str, data_dir: Optional[str] = None,
                         classifier_path: Optional[str] = None,
                         clf: Optional[reference.ReferenceClassifier] = None
                         ) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) of the reference classifier's features on the real training
  set, cached at <data dir>/classifiers/<dataset>.fid_stats.npz. `clf`, when
  given, is that classifier already loaded."""
  clf_path = classifier_path or reference.default_path(dataset, data_dir)
  clf = clf or reference.load(dataset, data_dir, path=classifier_path)
  digest = _file_hash(clf_path)
  cache = os.path.splitext(clf_path)[0] + ".fid_stats.npz"
  if os.path.exists(cache):
    with np.load(cache) as f:
      if str(f["classifier_sha256"]) == digest:
        return f["mu"], f["sigma"]
  images, _ = data.load(dataset, "train", data_dir)
  _, feats = classifier_outputs(clf, images)
  mu, sigma = metrics.feature_statistics(feats)
  fileio.atomic_write_npz(cache, mu=mu, sigma=sigma, classifier_sha256=np.array(digest))
  return mu, sigma


def sample_quality(gen: generated_lib.GeneratedSet, dataset: str,
                   data_dir: Optional[str] = None, *, is_samples: int = IS_SAMPLES,
                   fid_samples: int = FID_SAMPLES, classifier_path: Optional[str] = None,
                   log: Callable[[str], None] = print) -> dict:
  """IS (mean, std over 10 splits), FID (LeNet features) and the fraction of
  samples the classifier assigns to their conditioning label."""
  generated_lib.require_samples(gen, is_samples, "the Inception Score")
  generated_lib.require_samples(gen, fid_samples, "FID")
  clf = reference.load(dataset, data_dir, path=classifier_path)
  n = max(is_samples, fid_samples)
  # A class-balanced prefix is not guaranteed for arbitrary files: shuffle once.
  order = np.random.default_rng(0).permutation(len(gen.y))[:n]
  log(f"classifier outputs for {n} generated samples ...")
  logits, feats = classifier_outputs(clf, gen.x[order])
  is_mean, is_std = metrics.inception_score(logits[:is_samples], IS_SPLITS)
  log("reference feature statistics of the real training set ...")
  mu_r, sigma_r = reference_statistics(dataset, data_dir, classifier_path, clf)
  fid = metrics.frechet_distance(*metrics.feature_statistics(feats[:fid_samples]),
                                 mu_r, sigma_r)
  label_acc = float(np.mean(np.argmax(logits, -1) == gen.y[order]))
  return {"is_mean": is_mean, "is_std": is_std, "fid_lenet": fid,
          "label_acc": label_acc, "is_samples": is_samples, "fid_samples": fid_samples}
