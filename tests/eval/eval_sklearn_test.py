"""The scikit-learn suite on a tiny separable fixture."""

import numpy as np
import pytest

from jaxtiny.eval import sklearn_suite


def _blobs(n, seed):
  """Ten classes, each a bright square at its own place on a dark image."""
  rng = np.random.default_rng(seed)
  y = np.arange(n) % 10
  x = rng.random((n, 28, 28)) * 0.2
  for i, label in enumerate(y):
    r, c = divmod(int(label), 5)
    x[i, 4 + 12 * r:12 + 12 * r, 2 + 5 * c:6 + 5 * c] += 0.8
  return x.astype(np.float32), y


def test_every_model_learns_a_separable_fixture():
  x_train, y_train = _blobs(300, 0)
  x_test, y_test = _blobs(100, 1)
  logs = []
  accs = sklearn_suite.evaluate_models(x_train, y_train, x_test, y_test, n_jobs=2,
                                       log=logs.append)
  assert list(accs) == sklearn_suite.all_models() and len(accs) == 12
  assert len(logs) == 12
  for name, acc in accs.items():
    assert acc > 0.9, (name, acc)


def test_labels_carry_the_signal():
  """Shuffled training labels: accuracy drops to about chance."""
  x_train, y_train = _blobs(300, 0)
  x_test, y_test = _blobs(200, 1)
  shuffled = np.random.default_rng(0).permutation(y_train)
  accs = sklearn_suite.evaluate_models(x_train, shuffled, x_test, y_test,
                                       models=["LogisticRegression", "GaussianNB"],
                                       log=lambda _: None)
  assert all(a < 0.35 for a in accs.values()), accs


def test_bad_requests_are_clear():
  x, y = _blobs(20, 0)
  with pytest.raises(ValueError, match="unknown model 'SVM'"):
    sklearn_suite.evaluate_models(x, y, x, y, models=["SVM"], n_jobs=1)
  with pytest.raises(ValueError, match="single label"):
    sklearn_suite.evaluate_models(x, np.zeros_like(y), x, y, n_jobs=1)
