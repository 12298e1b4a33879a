"""Inception Score and FID of a generated set.

Both use the dataset's reference classifier (`jaxtiny.classifier.reference`):
IS from its logits, FID from its penultimate (hidden-layer) features, with the
reference statistics computed once from the real training set and cached next
to the classifier (keyed by the classifier file's hash, so retraining the
classifier invalidates them). The standard FID on Inception-v3 features is
computed only from a weights file the user supplies (`inception_fid`).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import jax
import numpy as np

from jaxtiny import data
from jaxtiny import fileio
from jaxtiny.classifier import reference
from jaxtiny.eval import generated as generated_lib
from jaxtiny.eval import inception
from jaxtiny.eval import metrics
from jaxtiny.train import metrics as train_metrics

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


def reference_statistics(dataset: str, data_dir: Optional[str] = None,
                         classifier_path: Optional[str] = None,
                         clf: Optional[reference.ReferenceClassifier] = None
                         ) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) of the reference classifier's features on the real training
  set, cached at <data dir>/classifiers/<dataset>.fid_stats.npz. `clf`, when
  given, is that classifier already loaded."""
  clf_path = classifier_path or reference.default_path(dataset, data_dir)
  clf = clf or reference.load(dataset, data_dir, path=classifier_path)
  digest = fileio.sha256_file(clf_path)
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
  samples the classifier assigns to their conditioning label, with its
  per-label breakdown (`metrics.label_confusion`, `metrics.label_report`)."""
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
  confusion = metrics.label_confusion(np.argmax(logits, -1), gen.y[order], logits.shape[-1])
  return {"is_mean": is_mean, "is_std": is_std, "fid_lenet": fid,
          "label_acc": float(np.trace(confusion) / confusion.sum()),
          "label_confusion": confusion.tolist(),
          **metrics.label_report(confusion),
          "is_samples": is_samples, "fid_samples": fid_samples}


# --- FID with Inception-v3 features (only when the user supplies the weights) ---

INCEPTION_BATCH = 50
INCEPTION_SAVE_EVERY = 2_000  # Images between partial saves of a long feature pass.


def _resumable_inception_features(params, images: np.ndarray, partial_path: str,
                                  desc: str) -> np.ndarray:
  """Inception features of `images`, saved to `partial_path` every
  INCEPTION_SAVE_EVERY images so an interrupted pass resumes (tens of minutes
  to hours on a CPU). The partial file is removed when the pass completes."""
  n = len(images)
  feats = np.empty((n, inception.FEATURE_DIM), np.float64)
  done = 0
  if os.path.exists(partial_path):
    with np.load(partial_path) as f:
      if int(f["total"]) == n:
        done = int(f["done"])
        feats[:done] = f["features"][:done]
  progress = train_metrics.Progress(n, start_step=done, desc=desc)
  while done < n:
    stop = min(n, done + INCEPTION_SAVE_EVERY)
    feats[done:stop] = inception.batched_features(
        params, images[done:stop], INCEPTION_BATCH,
        progress=lambda k, _, s=done: progress.update(s + k))
    done = stop
    if done < n:
      fileio.atomic_write_npz(partial_path, features=feats[:done], done=np.array(done),
                              total=np.array(n))
  progress.close(n)
  if os.path.exists(partial_path):
    os.remove(partial_path)
  return feats


def inception_reference_statistics(dataset: str, params, weights_sha256: str,
                                   data_dir: Optional[str] = None,
                                   reference_samples: int = 0,
                                   log: Callable[[str], None] = print
                                   ) -> tuple[np.ndarray, np.ndarray, int]:
  """(mu, sigma, n) of Inception pool3 features of n real training images
  (all of them, or a seeded random `reference_samples` subset), cached under
  <data dir>/eval/ keyed by the weights file's hash and n."""
  images, _ = data.load(dataset, "train", data_dir)
  n = reference_samples if 0 < reference_samples < len(images) else len(images)
  cache_dir = os.path.join(data.data_dir(data_dir), "eval")
  os.makedirs(cache_dir, exist_ok=True)
  stem = os.path.join(cache_dir, f"{dataset}_inception_{weights_sha256[:16]}_{n}")
  if os.path.exists(stem + ".npz"):
    with np.load(stem + ".npz") as f:
      return f["mu"], f["sigma"], n
  if n < len(images):
    images = images[np.sort(np.random.default_rng(0).permutation(len(images))[:n])]
  log(f"Inception-v3 reference statistics: {n} real training images (cached in {stem}.npz)")
  feats = _resumable_inception_features(params, images.astype(np.float32) / 255.0,
                                        stem + ".partial.npz", "Inception (real)")
  mu, sigma = metrics.feature_statistics(feats)
  fileio.atomic_write_npz(stem + ".npz", mu=mu, sigma=sigma)
  return mu, sigma, n


def inception_fid(gen: generated_lib.GeneratedSet, dataset: str, weights_path: str,
                  work_dir: str, data_dir: Optional[str] = None, *,
                  fid_samples: int = FID_SAMPLES, reference_samples: int = 0,
                  loaded: Optional[tuple] = None,
                  log: Callable[[str], None] = print) -> dict:
  """The standard FID (Inception-v3 pool3 features) of a generated set.

  Args:
    gen: the generated set; its first `fid_samples` after the same seeded
      shuffle as `sample_quality` are scored.
    weights_path: the FID Inception-v3 weights (pytorch-fid's
      pt_inception-2015-12-05 file, or an .npz with its keys).
    work_dir: where partial generated features are kept while running.
    reference_samples: real training images for the reference statistics
      (0: the whole training set, the standard choice).
    loaded: `inception.load(weights_path)`'s result when the caller already
      has it (the file is then not read again).

  Returns:
    {"fid_inception", "fid_inception_samples",
     "fid_inception_reference_samples", "inception_weights_sha256"}.
  """
  generated_lib.require_samples(gen, fid_samples, "FID (Inception-v3)")
  params, sha = loaded or inception.load(weights_path)
  mu_r, sigma_r, n_ref = inception_reference_statistics(dataset, params, sha, data_dir,
                                                 reference_samples, log)
  order = np.random.default_rng(0).permutation(len(gen.y))[:fid_samples]
  log(f"Inception-v3 features of {fid_samples} generated samples ...")
  feats = _resumable_inception_features(
      params, gen.x[order], os.path.join(work_dir, "eval_inception.partial.npz"),
      "Inception (generated)")
  fid = metrics.frechet_distance(*metrics.feature_statistics(feats), mu_r, sigma_r)
  return {"fid_inception": fid, "fid_inception_samples": fid_samples,
          "fid_inception_reference_samples": n_ref, "inception_weights_sha256": sha}
