import importlib

import ml_collections
import pytest

from experiments.configs import classifier


@pytest.mark.parametrize("arg", ["mnist", "fashion_mnist", "smoke", "mnist,paper"])
def test_classifier_variants_are_locked_data(arg):
  c = classifier.get_config(arg)
  assert isinstance(c, ml_collections.ConfigDict)
  assert c.dataset in ("mnist", "fashion_mnist")
  with pytest.raises(AttributeError):
    c.new_field = 1  # Locked: typos in overrides fail loudly.
  assert c.batch_size % 2 == 0 and c.eval_batch_size % 2 == 0


def test_paper_variant_trains_longer_and_unknown_variant_errors():
  assert classifier.get_config("mnist,paper").num_epochs > classifier.get_config("mnist").num_epochs
  with pytest.raises(ValueError, match="unknown classifier variant 'cifar'"):
    classifier.get_config("cifar")
