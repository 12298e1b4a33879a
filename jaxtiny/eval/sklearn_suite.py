"""Downstream accuracy of the 12 scikit-learn models the GS-WGAN paper uses.

Each model is trained on the flattened generated images (pixels in [0, 1])
with their conditioning labels and tested on the real test set. "MLP accuracy"
is the MLPClassifier row; "Avg accuracy" is the mean over all 12 rows. XGBoost
comes from the `xgboost-cpu` (or `xgboost`) package; where neither imports,
its row is HistGradientBoosting with the same budget, and the row's name says
so. Models run in parallel processes (joblib), one model per worker.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable, Optional, Sequence

import joblib
import numpy as np

MLP = "MLPClassifier"
XGB = "XGBoost"
XGB_FALLBACK = "XGBoost->HistGradientBoosting (xgboost not installed)"


def _xgboost_available() -> bool:
  try:
    import xgboost  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def xgboost_row_name() -> str:
  return XGB if _xgboost_available() else XGB_FALLBACK


def make_model(name: str, seed: int = 0):
  """A fresh estimator for one row of the suite (settings from the paper)."""
  # pylint: disable=g-import-not-at-top
  from sklearn import discriminant_analysis, ensemble, linear_model, naive_bayes
  from sklearn import neural_network, svm, tree
  if name == "LogisticRegression":
    return linear_model.LogisticRegression(solver="lbfgs", max_iter=5000)
  if name == "RandomForest":
    return ensemble.RandomForestClassifier(n_estimators=100, class_weight="balanced",
                                           random_state=seed)
  if name == "GaussianNB":
    return naive_bayes.GaussianNB()
  if name == "BernoulliNB":
    return naive_bayes.BernoulliNB(binarize=0.5)
  if name == "LinearSVC":
    return svm.LinearSVC(random_state=seed)
  if name == "DecisionTree":
    return tree.DecisionTreeClassifier(class_weight="balanced", random_state=seed)
  if name == "LDA":
    return discriminant_analysis.LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.5)
  if name == "AdaBoost":
    return ensemble.AdaBoostClassifier(n_estimators=100, random_state=seed)
  if name == MLP:
    return neural_network.MLPClassifier(random_state=seed)
  if name == "Bagging":
    return ensemble.BaggingClassifier(max_samples=0.1, n_estimators=20, random_state=seed)
  if name == "GradientBoosting":
    return ensemble.GradientBoostingClassifier(subsample=0.1, n_estimators=50,
                                               random_state=seed)
  if name == XGB:
    import xgboost
    return xgboost.XGBClassifier(colsample_bytree=0.1, n_estimators=50, n_jobs=1,
                                 random_state=seed)
  if name == XGB_FALLBACK:
    return ensemble.HistGradientBoostingClassifier(max_iter=50, random_state=seed)
  raise ValueError(f"unknown model {name!r}; known: {', '.join(all_models())}.")


def all_models() -> list[str]:
  """The 12 rows, in the paper's order."""
  return ["LogisticRegression", "RandomForest", "GaussianNB", "BernoulliNB",
          "LinearSVC", "DecisionTree", "LDA", "AdaBoost", MLP, "Bagging",
          "GradientBoosting", xgboost_row_name()]


# `--fast`: the cheap rows (and MLP, which the paper reports on its own) on a
# subsample of the generated set. Documented in experiments/evaluate.py.
FAST_MODELS = ("LogisticRegression", "GaussianNB", "BernoulliNB", "LDA", MLP,
               "RandomForest")


def _fit_score(name: str, x_train, y_train, x_test, y_test, seed: int):
  t0 = time.time()
  model = make_model(name, seed)
  with warnings.catch_warnings():
    # Convergence warnings are part of the protocol (fixed iteration budgets).
    warnings.simplefilter("ignore")
    model.fit(x_train, y_train)
    acc = float(np.mean(model.predict(x_test) == y_test))
  return name, acc, time.time() - t0


def evaluate_models(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                    y_test: np.ndarray, models: Optional[Sequence[str]] = None, *,
                    n_jobs: int = -1, seed: int = 0,
                    log: Callable[[str], None] = print) -> dict[str, float]:
  """Test accuracy of each model (name -> accuracy), in the order given.

  Images are flattened; pixels are expected in [0, 1].
  """
  models = list(models or all_models())
  flat = lambda a: np.asarray(a, np.float32).reshape(len(a), -1)
  x_train, x_test = flat(x_train), flat(x_test)
  if len(np.unique(y_train)) < 2:
    raise ValueError("the training set has a single label; classifiers need at least 2.")
  done: dict[str, float] = {}
  jobs = (joblib.delayed(_fit_score)(m, x_train, y_train, x_test, y_test, seed)
          for m in models)
  t0 = time.time()
  for name, acc, secs in joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
    done[name] = acc
    log(f"  [{len(done)}/{len(models)}] {name}: {acc:.4f} ({secs:.0f} s; "
        f"{time.time() - t0:.0f} s elapsed)")
  return {m: done[m] for m in models}
