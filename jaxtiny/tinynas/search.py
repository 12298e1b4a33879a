"""Memory-constrained evolutionary search over the subnets of a space.

The population only ever holds subnets that fit the budget: random samples,
mutations and crossovers are redrawn until they fit (a bounded number of
tries, then a clear error). Scores come from a caller-supplied function (the
supernet's validation accuracy with recalibrated batch norm) and are cached
per subnet. Host-side randomness is a numpy Generator seeded from the config.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from jaxtiny.tinynas import profile as profile_lib
from jaxtiny.tinynas import space as space_lib

Choice = space_lib.SubnetChoice
MAX_TRIES = 2000


class SearchError(RuntimeError):
  """The budget admits (almost) no subnet of the space."""


@dataclasses.dataclass
class Constraint:
  """Budget check with a cache of profiles (subnets repeat during search)."""
  space: space_lib.SearchSpace
  budget: space_lib.Budget
  _cache: dict = dataclasses.field(default_factory=dict)

  def profile(self, choice: Choice) -> dict:
    if choice not in self._cache:
      self._cache[choice] = profile_lib.profile(
          space_lib.to_arch(self.space, choice),
          sram=self.budget.needs_sram_plan)
    return self._cache[choice]

  def fits(self, choice: Choice) -> bool:
    return self.budget.fits(self.profile(choice))


def _resolution(choice: Choice, resolutions: Sequence[int],
                rng: np.random.Generator) -> int:
  return int(rng.choice(resolutions)) if resolutions else choice.resolution


def random_fitting(c: Constraint, rng: np.random.Generator,
                   resolutions: Sequence[int] = ()) -> Choice:
  for _ in range(MAX_TRIES):
    choice = space_lib.sample(c.space, rng)
    choice = dataclasses.replace(choice,
                                 resolution=_resolution(choice, resolutions, rng))
    if c.fits(choice):
      return choice
  raise SearchError(
      f"no subnet of {c.space.name} fits {c.budget.name} in {MAX_TRIES} random "
      "draws; pick another space (run stage 1) or raise the budget.")


def mutate(c: Constraint, choice: Choice, prob: float,
           rng: np.random.Generator, resolutions: Sequence[int] = ()) -> Choice:
  """Resamples each gene with probability `prob`, until the result fits."""
  s = c.space
  for _ in range(MAX_TRIES):
    depths = tuple(int(rng.choice(s.depths)) if rng.random() < prob else d
                   for d in choice.depths)
    kernels = tuple(int(rng.choice(s.kernels)) if rng.random() < prob else k
                    for k in choice.kernels)
    expands = tuple(int(rng.choice(s.expands)) if rng.random() < prob else e
                    for e in choice.expands)
    res = choice.resolution
    if resolutions and rng.random() < prob:
      res = int(rng.choice(resolutions))
    child = Choice(depths, kernels, expands, res)
    if c.fits(child):
      return child
  raise SearchError(f"no fitting mutation of {choice} in {MAX_TRIES} tries.")


def crossover(c: Constraint, a: Choice, b: Choice,
              rng: np.random.Generator) -> Choice:
  """Takes each gene from one parent at random, until the result fits."""
  pick = lambda x, y: tuple(p if rng.random() < 0.5 else q  # noqa: E731
                            for p, q in zip(x, y))
  for _ in range(MAX_TRIES):
    child = Choice(pick(a.depths, b.depths), pick(a.kernels, b.kernels),
                   pick(a.expands, b.expands),
                   a.resolution if rng.random() < 0.5 else b.resolution)
    if c.fits(child):
      return child
  raise SearchError(f"no fitting crossover of {a} and {b} in {MAX_TRIES} tries.")


@dataclasses.dataclass
class SearchResult:
  best: Choice
  best_score: float
  history: list[dict]           # per generation: best/mean score, evaluated.
  scores: dict                  # Choice -> score, every subnet evaluated.


def evolve(c: Constraint, score_fn: Callable[[Choice], float],
           rng: np.random.Generator, population: int = 100,
           parent_ratio: float = 0.25, mutation_ratio: float = 0.5,
           generations: int = 20, mutate_prob: float = 0.1,
           resolutions: Sequence[int] = (),
           on_generation: Callable[[int, dict], None] | None = None
           ) -> SearchResult:
  """Evolutionary search (population, parents, mutation/crossover children).

  Each generation keeps the top `parent_ratio` of the population, then fills
  it with `mutation_ratio` mutated parents and crossovers of two parents.
  Every member always fits the budget.
  """
  scores: dict = {}

  def score(choice: Choice) -> float:
    if choice not in scores:
      scores[choice] = float(score_fn(choice))
    return scores[choice]

  pop = [random_fitting(c, rng, resolutions) for _ in range(population)]
  history = []
  n_parents = max(1, int(round(parent_ratio * population)))
  n_mutate = int(round(mutation_ratio * population))
  for gen in range(generations + 1):
    ranked = sorted(pop, key=score, reverse=True)
    vals = [score(p) for p in ranked]
    record = {"generation": gen, "best": vals[0], "mean": float(np.mean(vals)),
              "evaluated": len(scores)}
    history.append(record)
    if on_generation is not None:
      on_generation(gen, record)
    if gen == generations:
      break
    parents = ranked[:n_parents]
    children = []
    for _ in range(n_mutate):
      parent = parents[rng.integers(len(parents))]
      children.append(mutate(c, parent, mutate_prob, rng, resolutions))
    while len(children) < population - n_parents:
      i, j = rng.integers(len(parents), size=2)
      children.append(crossover(c, parents[i], parents[j], rng))
    pop = parents + children
  best = max(scores, key=scores.get)
  return SearchResult(best, scores[best], history, scores)
