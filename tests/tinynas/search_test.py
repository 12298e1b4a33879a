"""Stage 1 ranking, constrained evolution, MobileNetV2 baseline builder."""

import os

import numpy as np
import pytest

from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import pipeline
from jaxtiny.tinynas import profile as profile_lib
from jaxtiny.tinynas import search
from jaxtiny.tinynas import space as space_lib
from tests import helpers

BUDGET = space_lib.Budget(32 * 1024, 256 * 1024)


def test_space_widths_follow_proxylessnas_scaled_to_multiples_of_8():
  assert space_lib.SearchSpace(1.0, 64).widths == (32, 16, 24, 40, 80, 96, 192,
                                                   320)
  for w in (0.2, 0.35, 0.5, 0.75):
    widths = space_lib.SearchSpace(w, 64).widths
    assert all(c % 8 == 0 and c >= 8 for c in widths)


def test_subnet_archs_are_valid_and_bounded_by_largest_and_smallest():
  sp = space_lib.SearchSpace(0.4, 48)
  rng = np.random.default_rng(0)
  big = profile_lib.profile(space_lib.to_arch(sp, space_lib.largest(sp)))
  small = profile_lib.profile(space_lib.to_arch(sp, space_lib.smallest(sp)))
  for _ in range(50):
    a = space_lib.to_arch(sp, space_lib.sample(sp, rng))
    arch_lib.validate(a)
    p = profile_lib.profile(a)
    assert small["macs"] <= p["macs"] <= big["macs"]
    assert small["flash_bytes"] <= p["flash_bytes"] <= big["flash_bytes"]


def test_stage1_ranks_by_mean_macs_of_fitting_subnets(tmp_path):
  spaces = space_lib.grid((0.2, 0.3, 0.5), (32, 48, 64))
  stats = space_lib.optimise_spaces(spaces, BUDGET, 200, seed=0)
  usable = [s for s in stats if s.fit_fraction >= 0.1]
  means = [s.mean_macs for s in usable]
  assert means == sorted(means, reverse=True) and len(usable) >= 3
  # Usable spaces come first; the unusable ones after them.
  assert stats[:len(usable)] == usable
  # The wide space does not fit at all: 0.5 x 64 needs far more than 32 kB.
  wide = [s for s in stats if s.space.name == "w0.5-r64"][0]
  assert wide.fit_fraction == 0.0 and wide.mean_macs == 0.0
  # The counted MACs are those of the subnets that fit: redo one space by hand.
  sp = usable[0].space
  again = space_lib.evaluate_space(sp, BUDGET, 100, np.random.default_rng(3))
  rng = np.random.default_rng(3)
  by_hand = [p["macs"] for p in (profile_lib.profile(space_lib.to_arch(
      sp, space_lib.sample(sp, rng))) for _ in range(100)) if BUDGET.fits(p)]
  np.testing.assert_array_equal(again.fitting_macs, np.sort(by_hand))
  assert 0 < len(by_hand) < 100
  path = tmp_path / "cdf.png"
  space_lib.plot_flops_cdf(stats, BUDGET, str(path))
  assert path.stat().st_size > 5000


def test_mutation_and_crossover_always_fit_the_budget():
  sp = space_lib.SearchSpace(0.3, 56)
  cons = search.Constraint(sp, BUDGET)
  rng = np.random.default_rng(0)
  parents = [search.random_fitting(cons, rng) for _ in range(10)]
  children = []
  for i in range(200):
    a, b = parents[i % 10], parents[(3 * i + 1) % 10]
    children.append(search.mutate(cons, a, 0.5, rng))
    children.append(search.crossover(cons, a, b, rng))
  for c in parents + children:
    arch = space_lib.to_arch(sp, c)
    arch_lib.validate(arch)
    assert BUDGET.fits(profile_lib.profile(arch))
    assert all(d in sp.depths for d in c.depths)
    assert all(k in sp.kernels for k in c.kernels)
    assert all(e in sp.expands for e in c.expands)
  # Mutation with probability 0.5 really changes things.
  assert len(set(children)) > 100


def test_evolution_finds_the_best_fitting_subnet_of_a_known_score():
  # Fitness = MACs: the search should climb to large subnets that still fit.
  sp = space_lib.SearchSpace(0.3, 56)
  cons = search.Constraint(sp, BUDGET)
  score = lambda c: cons.profile(c)["macs"] / 1e6
  res = search.evolve(cons, score, np.random.default_rng(0), population=20,
                      generations=6)
  assert res.history[-1]["best"] >= res.history[0]["best"]
  assert res.history[-1]["mean"] > res.history[0]["mean"]
  assert cons.fits(res.best)
  # Better than 95% of random fitting subnets.
  rng = np.random.default_rng(5)
  rand = [score(search.random_fitting(cons, rng)) for _ in range(100)]
  assert res.best_score >= np.percentile(rand, 95)


def test_impossible_budget_is_a_clear_error():
  cons = search.Constraint(space_lib.SearchSpace(1.0, 64),
                           space_lib.Budget(1024, 1024))
  with pytest.raises(search.SearchError, match="no subnet of w1-r64 fits"):
    search.random_fitting(cons, np.random.default_rng(0))


def test_mobilenet_v2_builder_matches_published_mbv2():
  ref = arch_lib.load(os.path.join(helpers.shared_mcunet_dir(),
                                   "mbv2-w0.35-r144_imagenet.json"))
  assert pipeline.mobilenet_v2(0.35, 144, in_channels=3,
                               num_classes=1000) == ref


def test_scaled_mobilenet_v2_is_the_largest_that_fits():
  arch, w = pipeline.scaled_mobilenet_v2(BUDGET, (0.1, 0.2, 0.3, 0.5),
                                         (32, 48, 64))
  p = profile_lib.profile(arch)
  assert BUDGET.fits(p)
  for w2 in (0.1, 0.2, 0.3, 0.5):
    for r in (32, 48, 64):
      q = profile_lib.profile(pipeline.mobilenet_v2(w2, r))
      if BUDGET.fits(q):
        assert q["macs"] <= p["macs"]
