"""Sample-quality statistics computed from a reference classifier's outputs.

Pure numpy (float64) functions of logits or features, so they can be tested
on synthetic inputs with known answers:

- `inception_score`: exp(E_x KL(p(y|x) || p(y))) over equal splits, mean and
  standard deviation across splits (Salimans et al. 2016; the GS-WGAN paper
  computes it with a dataset-specific classifier instead of Inception).
- `frechet_distance`: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between
  Gaussians fitted to two feature sets (Heusel et al. 2017). With our LeNet's
  penultimate features this is "FID (LeNet features)", not comparable in
  value to the Inception-feature FID of the papers.
- `intra_class_distance`: mean pairwise Euclidean distance between samples of
  the same class (pixel space), averaged over classes: a direct measure of
  within-class variety, 0 for a generator that draws one image per class
  (mode collapse), which IS and label accuracy reward rather than penalise.
- `label_confusion`: how the reference classifier reads the samples of each
  conditioning label (rows: label, columns: reading), and the per-label
  accuracy and most common misreading derived from it: where a conditional
  generator's label accuracy is lost.
- `background_stats`: what a generator draws where real digits are blank
  (pixels whose real mean is below a threshold): how often exactly 0, the
  mean value, and how much of it depends on the class (between-class spread
  of the per-pixel class means against the within-class spread). Faint
  class-dependent backgrounds mislead GaussianNB and RandomForest trained on
  the samples, whose test digits are exactly 0 there.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
  """(mean, std) of the Inception Score of `logits` [N, classes] over `splits`
  equal parts. Ranges from 1 (every prediction the same, or uniform) to the
  number of classes (confident predictions spread evenly over the classes)."""
  logits = np.asarray(logits)
  if logits.ndim != 2:
    raise ValueError(f"logits must be [N, classes], got shape {logits.shape}.")
  if splits < 1 or len(logits) < splits:
    raise ValueError(f"inception_score needs at least splits={splits} samples, got "
                     f"{len(logits)}.")
  scores = []
  for part in np.array_split(log_softmax(logits), splits):
    log_py = np.log(np.mean(np.exp(part), axis=0))
    kl = np.sum(np.exp(part) * (part - log_py), axis=1)
    scores.append(np.exp(np.mean(kl)))
  return float(np.mean(scores)), float(np.std(scores))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean [D] and unbiased covariance [D, D] of `features` [N, D], float64."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or len(f) < 2:
    raise ValueError(f"features must be [N >= 2, D], got shape {f.shape}.")
  return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((m + m.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

  tr((S1 S2)^(1/2)) is computed as the trace of the square root of the
  symmetric PSD matrix S1^(1/2) S2 S1^(1/2) (similar to S1 S2, hence the same
  eigenvalues), so no complex square roots arise from rounding.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
    raise ValueError(f"mismatched statistics: means {mu1.shape} and {mu2.shape}, "
                     f"covariances {s1.shape} and {s2.shape}.")
  root1 = _sqrt_psd(s1)
  cross = np.linalg.eigvalsh(root1 @ s2 @ root1)
  tr_cross = float(np.sum(np.sqrt(np.clip(cross, 0.0, None))))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_cross)


INTRA_CLASS_SAMPLES = 500  # Samples per class in `intra_class_distance`.


def intra_class_distance(x: np.ndarray, y: np.ndarray, *,
                         per_class: int = INTRA_CLASS_SAMPLES, seed: int = 0) -> float:
  """Mean over classes of the mean Euclidean distance between two different
  samples of that class.

  `x` [N, ...] (flattened per sample), `y` [N] integer labels. Each class
  with at least two samples contributes the mean over all pairs of up to
  `per_class` of its samples (a fixed random subset when it has more, chosen
  with `seed`); classes with fewer than two samples are left out. The value
  is 0 (up to float64 rounding) when every class's subset is one repeated
  image, and scales linearly with the data (distance(a x) = a distance(x)).
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  y = np.asarray(y)
  if y.shape != (len(x),):
    raise ValueError(f"labels must be [N] for N={len(x)} samples, got shape {y.shape}.")
  rng = np.random.default_rng(seed)
  means = []
  for c in np.unique(y):
    idx = np.flatnonzero(y == c)
    if len(idx) < 2:
      continue
    if len(idx) > per_class:
      idx = np.sort(rng.choice(idx, per_class, replace=False))
    xc = x[idx]
    sq = np.sum(xc * xc, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (xc @ xc.T), 0.0)
    iu = np.triu_indices(len(idx), 1)
    means.append(float(np.mean(np.sqrt(d2[iu]))))
  if not means:
    raise ValueError("intra_class_distance needs a class with at least two samples.")
  return float(np.mean(means))


def label_confusion(predicted: np.ndarray, labels: np.ndarray,
                    num_classes: int) -> np.ndarray:
  """Counts [num_classes, num_classes]: entry (i, j) is how many samples drawn
  for label i the classifier reads as j. Rows sum to each label's sample
  count; the trace over the total is the label accuracy."""
  predicted, labels = np.asarray(predicted), np.asarray(labels)
  if predicted.shape != labels.shape or predicted.ndim != 1:
    raise ValueError(f"predicted and labels must both be [N], got shapes {predicted.shape} "
                     f"and {labels.shape}.")
  for name, v in (("predicted", predicted), ("labels", labels)):
    if len(v) and (v.min() < 0 or v.max() >= num_classes):
      raise ValueError(f"{name} must lie in [0, {num_classes}), got [{v.min()}, {v.max()}].")
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
  return counts


def label_report(confusion: np.ndarray) -> dict:
  """Per-label accuracy (None for a label with no samples) and, per label, the
  most common wrong reading with its share of that label's samples."""
  confusion = np.asarray(confusion)
  per_class, misread = [], []
  for i, row in enumerate(confusion):
    n = int(row.sum())
    if n == 0:
      per_class.append(None)
      misread.append(None)
      continue
    per_class.append(float(row[i] / n))
    wrong = row.copy()
    wrong[i] = 0
    j = int(np.argmax(wrong))
    misread.append({"as": j, "share": float(wrong[j] / n)} if wrong[j] else None)
  return {"label_acc_per_class": per_class, "label_misread": misread}


def background_stats(gen_x: np.ndarray, gen_y: np.ndarray, real_x: np.ndarray, *,
                     threshold: float = 0.01) -> dict:
  """Generated pixel values on the real data's background.

  `gen_x` [N, ...] and `real_x` [M, ...] in [0, 1] (flattened per sample),
  `gen_y` [N] labels. Background pixels: those whose mean over `real_x` is
  below `threshold`. Returns the number of background pixels, the fraction of
  all pixels that are exactly 0 (real and generated), the mean value on the
  background (real and generated), and for the generated background the mean
  over pixels of the standard deviation across classes of the per-class means
  (`between_class_sd`), of the mean within-class standard deviation
  (`within_class_sd`), and their ratio (`class_signal`, 0 when every class has the
  same mean background). Classes with no sample are left out.
  """
  g = np.asarray(gen_x, np.float64).reshape(len(gen_x), -1)
  r = np.asarray(real_x, np.float64).reshape(len(real_x), -1)
  y = np.asarray(gen_y)
  if g.shape[1] != r.shape[1]:
    raise ValueError(f"generated samples have {g.shape[1]} pixels, real ones {r.shape[1]}.")
  if y.shape != (len(g),):
    raise ValueError(f"labels must be [N] for N={len(g)} samples, got shape {y.shape}.")
  bg = r.mean(axis=0) < threshold
  if not bg.any():
    raise ValueError(f"no pixel has a real mean below threshold={threshold}.")
  gb = g[:, bg]
  classes = np.unique(y)
  class_means = np.stack([gb[y == c].mean(axis=0) for c in classes])
  within = float(np.mean([gb[y == c].std(axis=0).mean() for c in classes]))
  between = float(class_means.std(axis=0).mean())
  return {"background_pixels": int(bg.sum()),
          "real_exact_zero": float(np.mean(r == 0)),
          "gen_exact_zero": float(np.mean(g == 0)),
          "real_background_mean": float(r[:, bg].mean()),
          "gen_background_mean": float(gb.mean()),
          "between_class_sd": between, "within_class_sd": within,
          "class_signal": between / within if within > 0 else float("inf")}
