"""CelebA loader and group sampler on a generated CelebA-format folder."""

import json
import os

import numpy as np
import pytest

from experiments.configs import selftrain as selftrain_config
from jaxtiny.data import celeba
from tests.helpers import run_python


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("celeba"))
  celeba.write_fixture(path, num_images=80, seed=0)
  return path


def test_annotations_parse_the_official_format(root):
  ann = celeba.read_annotations(root)
  assert len(ann.filenames) == 80 and ann.filenames[0] == "000001.jpg"
  assert ann.attr_names == ("5_o_Clock_Shadow", "Blond_Hair", "Male", "Smiling")
  assert set(np.unique(ann.attrs)) <= {0, 1}
  # -1/1 in the file become 0/1, row for row.
  with open(os.path.join(root, celeba.ATTR_FILE)) as f:
    row = f.read().splitlines()[2 + 5].split()
  assert list(ann.attrs[5]) == [1 if v == "1" else 0 for v in row[1:]]
  assert np.bincount(ann.partition).tolist() == [48, 16, 16]
  with pytest.raises(celeba.CelebAError, match="unknown CelebA attribute"):
    ann.attr("Wavy_Hair")


def test_images_are_centre_cropped_resized_and_cached(root):
  ann = celeba.read_annotations(root)
  imgs = celeba.load_images(root, ann.filenames[:6], size=32)
  assert imgs.shape == (6, 32, 32, 3) and imgs.dtype == np.uint8
  caches = [f for f in os.listdir(root) if f.startswith("cache_32px_")]
  assert len(caches) == 1
  np.testing.assert_array_equal(celeba.load_images(root, ann.filenames[:6], 32),
                                imgs)
  x = celeba.to_float(imgs)
  assert x.min() >= -1.0 and x.max() <= 1.0
  # The fixture's blond images are brighter; the decoder keeps that.
  blond = ann.attr("Blond_Hair")[:6].astype(bool)
  if blond.any() and (~blond).any():
    assert x[blond].mean() > x[~blond].mean()


def test_group_sampler_counts_disjointness_and_errors(root):
  ann = celeba.read_annotations(root)
  rng = np.random.default_rng(0)
  y, s = ann.attr("Male"), ann.attr("Blond_Hair")
  src = celeba.group_indices(ann, "Male", "Blond_Hair", {(1, 1): 3, (0, 0): 3},
                             "train", rng)
  assert len(src) == 6
  assert set(zip(y[src], s[src])) == {(1, 1), (0, 0)}
  assert np.all(ann.partition[src] == 0)
  tgt = celeba.group_indices(ann, "Male", "Blond_Hair",
                             {(0, 0): -1, (1, 0): -1, (0, 1): -1, (1, 1): -1},
                             "train", rng, exclude=src)
  assert not set(src) & set(tgt)
  assert len(src) + len(tgt) == int((ann.partition == 0).sum())
  with pytest.raises(celeba.CelebAError, match="unused images with Male=1"):
    celeba.group_indices(ann, "Male", "Blond_Hair", {(1, 1): 1000}, "train",
                         rng)


def test_missing_data_error_says_what_to_put_where(tmp_path):
  with pytest.raises(celeba.CelebAError) as e:
    celeba.read_annotations(str(tmp_path))
  msg = str(e.value)
  for needle in ("img_align_celeba/", "list_attr_celeba.txt",
                 "list_eval_partition.txt", "--config.celeba_dir"):
    assert needle in msg


def test_celeba_smoke_run_end_to_end(root, tmp_path):
  config = selftrain_config.get_config("celeba,smoke")
  assert config.source_groups == ((1, 1, 4), (0, 0, 4))
  run_python(["-m", "experiments.selftrain",
              "--config=experiments/configs/selftrain.py:celeba,smoke",
              f"--config.celeba_dir={root}", f"--workdir={tmp_path}"])
  res = json.loads((tmp_path / "results.json").read_text())
  assert res["seeds"] == 2 and res["sizes"] == {"source": 8, "target": 12,
                                                "test": 16}
  for key in ("source_only", "self_trained", "best"):
    assert 0.0 <= res[key]["target_acc_mean"] <= 1.0
    assert len(res[key]["per_seed"]) == 2
    assert len(res[key]["group_acc_mean"]) == 4
