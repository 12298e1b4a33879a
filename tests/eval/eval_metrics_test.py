"""IS and FID on synthetic inputs with known answers."""

import numpy as np
import pytest

from jaxtiny.eval import metrics


def test_inception_score_extremes():
  # Confident, evenly spread predictions: IS = number of classes, in every split.
  confident = np.full((1000, 10), -50.0)
  confident[np.arange(1000), np.arange(1000) % 10] = 50.0
  mean, std = metrics.inception_score(confident, splits=10)
  assert mean == pytest.approx(10.0, rel=1e-6) and std < 1e-6
  # Uniform predictions, or one class for everything: IS = 1.
  assert metrics.inception_score(np.zeros((500, 10)))[0] == pytest.approx(1.0)
  collapsed = np.zeros((500, 10))
  collapsed[:, 3] = 50.0
  assert metrics.inception_score(collapsed)[0] == pytest.approx(1.0, abs=1e-6)


def test_inception_score_matches_direct_formula():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(300, 5)) * 3
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  py = p.mean(0)
  expected = np.exp(np.mean(np.sum(p * np.log(p / py), axis=1)))
  assert metrics.inception_score(logits, splits=1)[0] == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_closed_form_for_diagonal_gaussians():
  rng = np.random.default_rng(1)
  mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
  a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_samples_is_near_zero_and_grows_with_noise():
  rng = np.random.default_rng(2)
  mix = rng.normal(size=(8, 8))
  f1 = rng.normal(size=(20000, 8)) @ mix
  f2 = rng.normal(size=(20000, 8)) @ mix
  base = metrics.frechet_distance(*metrics.feature_statistics(f1),
                                  *metrics.feature_statistics(f2))
  assert 0 <= base < 0.05 * np.trace(mix @ mix.T) / 8
  previous = base
  for scale in (0.5, 1.0, 2.0):
    noisy = f2 + scale * rng.normal(size=f2.shape)
    d = metrics.frechet_distance(*metrics.feature_statistics(f1),
                                 *metrics.feature_statistics(noisy))
    assert d > previous
    previous = d


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match="at least splits=10"):
    metrics.inception_score(np.zeros((5, 10)))
  with pytest.raises(ValueError, match=r"\[N, classes\]"):
    metrics.inception_score(np.zeros(10))
  with pytest.raises(ValueError, match="mismatched"):
    metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_intra_class_distance_known_values():
  # One class: the corners of a unit square (pairwise distances 1 x4, sqrt(2) x2);
  # the other: two points at distance 5. Mean over classes of the pair means.
  square = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float64)
  pair = np.array([[0, 0], [3, 4]], np.float64)
  x = np.concatenate([square, pair])
  y = np.array([0, 0, 0, 0, 1, 1])
  expected = ((4 + 2 * np.sqrt(2)) / 6 + 5.0) / 2
  assert metrics.intra_class_distance(x, y) == pytest.approx(expected, rel=1e-12)
  # Images are flattened; scaling the data scales the distance.
  assert metrics.intra_class_distance(3 * x.reshape(6, 1, 2), y) == pytest.approx(
      3 * expected, rel=1e-12)
  # A class with a single sample is left out.
  assert metrics.intra_class_distance(np.concatenate([x, [[9, 9]]]),
                                      np.append(y, 2)) == pytest.approx(expected)


def test_intra_class_distance_is_zero_for_a_collapsed_generator():
  rng = np.random.default_rng(0)
  prototypes = rng.uniform(size=(10, 28, 28))
  y = np.repeat(np.arange(10), 50)
  collapsed = prototypes[y]                     # One image per class.
  assert metrics.intra_class_distance(collapsed, y) == pytest.approx(0.0, abs=1e-6)
  varied = collapsed + rng.normal(scale=0.1, size=collapsed.shape)
  # i.i.d. noise of std s per pixel: E||a - b|| ~ s sqrt(2 * 784).
  assert metrics.intra_class_distance(varied, y) == pytest.approx(
      0.1 * np.sqrt(2 * 784), rel=0.02)


def test_intra_class_distance_subsamples_and_validates():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2000, 16))
  y = np.zeros(2000, int)
  full = metrics.intra_class_distance(x, y, per_class=2000)
  sub = metrics.intra_class_distance(x, y, per_class=200, seed=3)
  assert sub == metrics.intra_class_distance(x, y, per_class=200, seed=3)
  assert sub != metrics.intra_class_distance(x, y, per_class=200, seed=4)
  assert sub == pytest.approx(full, rel=0.03)
  with pytest.raises(ValueError, match="at least two samples"):
    metrics.intra_class_distance(x[:3], np.arange(3))
  with pytest.raises(ValueError, match=r"labels must be \[N\]"):
    metrics.intra_class_distance(x, y[:10])


def test_background_stats_known_values():
  # Real: 4 pixels, the last two always 0 (background); 2 of 8 values nonzero.
  real = np.array([[1.0, 0.5, 0, 0], [0.2, 0.0, 0, 0]])
  # Generated, class 0 draws 0.1 on the background, class 1 draws 0.3: the
  # background depends on the class only (within-class sd 0).
  gen = np.array([[1, 1, 0.1, 0.1], [1, 0, 0.1, 0.1], [1, 1, 0.3, 0.3], [0, 1, 0.3, 0.3]])
  y = np.array([0, 0, 1, 1])
  s = metrics.background_stats(gen, y, real, threshold=0.01)
  assert s["background_pixels"] == 2
  assert s["real_exact_zero"] == pytest.approx(5 / 8)
  assert s["gen_exact_zero"] == pytest.approx(2 / 16)
  assert s["real_background_mean"] == 0.0
  assert s["gen_background_mean"] == pytest.approx(0.2)
  assert s["between_class_sd"] == pytest.approx(0.1)  # std of (0.1, 0.3)
  assert s["within_class_sd"] == 0.0 and s["class_signal"] == float("inf")
  # Class-independent noise: the ratio is the (small) between / within spread.
  rng = np.random.default_rng(0)
  noisy = np.concatenate([np.ones((4000, 2)), rng.uniform(0, 0.1, (4000, 2))], axis=1)
  s = metrics.background_stats(noisy, np.arange(4000) % 2, real)
  assert s["within_class_sd"] == pytest.approx(0.1 / np.sqrt(12), rel=0.05)
  assert s["class_signal"] < 0.1
  with pytest.raises(ValueError, match="pixels"):
    metrics.background_stats(gen[:, :3], y, real)
  with pytest.raises(ValueError, match="threshold"):
    metrics.background_stats(gen, y, np.ones((2, 4)))


def test_label_confusion_and_report_known_values():
  labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
  predicted = np.array([0, 0, 1, 2, 1, 1, 2, 1, 1, 0])
  counts = metrics.label_confusion(predicted, labels, 4)
  np.testing.assert_array_equal(counts, [[2, 1, 1, 0], [0, 2, 0, 0], [1, 2, 1, 0], [0, 0, 0, 0]])
  # Rows are the conditioning labels; the trace over the total is label accuracy.
  np.testing.assert_array_equal(counts.sum(1), np.bincount(labels, minlength=4))
  assert np.trace(counts) / counts.sum() == np.mean(predicted == labels)
  report = metrics.label_report(counts)
  assert report["label_acc_per_class"] == [0.5, 1.0, 0.25, None]
  # Label 0 misread as 1 and as 2 once each: the first, 1, with a quarter of its samples.
  assert report["label_misread"] == [{"as": 1, "share": 0.25}, None,
                                     {"as": 1, "share": 0.5}, None]


def test_label_confusion_validates():
  with pytest.raises(ValueError, match="both be"):
    metrics.label_confusion(np.zeros(3, int), np.zeros(4, int), 10)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
    metrics.label_confusion(np.zeros(3, int), np.array([0, 10, 1]), 10)
  with pytest.raises(ValueError, match="predicted must lie"):
    metrics.label_confusion(np.array([-1, 0, 0]), np.zeros(3, int), 10)
