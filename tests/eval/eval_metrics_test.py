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
