"""TinyNAS stage 1: the search space and its optimisation under MCU budgets.

A `SearchSpace` is a (width multiplier W, input resolution R) point of the
ProxylessNAS/MobileNetV2 design space. Its subnets choose, per block, a kernel
size in {3, 5, 7} and an expand ratio in {3, 4, 5, 6}, and per stage a depth in
{2, 3, 4}. Stage widths are ProxylessNAS's [32, 16 | 24, 40, 80, 96, 192, 320]
times W, rounded to multiples of 8: a stride-2 stem of 32W channels, one
expand-1 3x3 block of 16W, five elastic stages (24, 40, 80, 96, 192; strides
2, 2, 2, 1, 2) and a single 320W block (stride 1).

Stage 1 of MCUNet picks the space before any training: sample subnets, keep
those that fit the SRAM and Flash budgets, and prefer the space whose fitting
subnets have the largest mean FLOPs (a bigger model that still fits tends to
be more accurate). `optimise_spaces` does that over a (W, R) grid and
`plot_flops_cdf` draws the per-space FLOPs CDF as in the paper (Fig. 3).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import profile as profile_lib

BASE_WIDTHS = (32, 16, 24, 40, 80, 96, 192, 320)
STAGE_STRIDES = (2, 2, 2, 1, 2)
KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 5, 6)
DEPTHS = (2, 3, 4)


def make_divisible(value: float, divisor: int = 8) -> int:
  """Rounds to the nearest multiple of `divisor` (at least one), never more
  than 10% below `value` (the MobileNet rule)."""
  new = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if new < 0.9 * value:
    new += divisor
  return new


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """One (W, R) design space; hashable, so it can key compiled programs."""
  width_mult: float
  resolution: int
  in_channels: int = 1
  num_classes: int = 10
  kernels: tuple[int, ...] = KERNELS
  expands: tuple[int, ...] = EXPANDS
  depths: tuple[int, ...] = DEPTHS

  @property
  def widths(self) -> tuple[int, ...]:
    return tuple(make_divisible(w * self.width_mult) for w in BASE_WIDTHS)

  @property
  def num_stages(self) -> int:
    return len(STAGE_STRIDES)

  @property
  def max_blocks(self) -> int:
    """Elastic blocks at full depth (the first and last blocks are fixed)."""
    return self.num_stages * max(self.depths)

  @property
  def name(self) -> str:
    return f"w{self.width_mult:g}-r{self.resolution}"


@dataclasses.dataclass(frozen=True)
class SubnetChoice:
  """A point of a space: per-stage depths and per-block (kernel, expand).

  `kernels` and `expands` have one entry per elastic block slot at full depth
  (stage-major, `max(depths)` slots per stage) plus one for the final block;
  slots beyond a stage's depth are ignored.
  """
  depths: tuple[int, ...]
  kernels: tuple[int, ...]
  expands: tuple[int, ...]
  resolution: int = 0               # 0: the space's resolution.


def to_arch(space: SearchSpace, choice: SubnetChoice) -> arch_lib.Arch:
  """The standalone architecture of one subnet."""
  w = space.widths
  dmax = max(space.depths)
  blocks = [arch_lib.Block(w[0], w[1], 3, 1, 1, w[0], False)]
  cin = w[1]
  for s, (depth, stride) in enumerate(zip(choice.depths, STAGE_STRIDES)):
    cout = w[2 + s]
    for j in range(depth):
      slot = s * dmax + j
      k, e = choice.kernels[slot], choice.expands[slot]
      st = stride if j == 0 else 1
      blocks.append(arch_lib.Block(cin, cout, k, st, e, cin * e,
                                   st == 1 and cin == cout))
      cin = cout
  k, e = choice.kernels[-1], choice.expands[-1]
  blocks.append(arch_lib.Block(cin, w[-1], k, 1, e, cin * e, cin == w[-1]))
  return arch_lib.Arch(resolution=choice.resolution or space.resolution,
                       in_channels=space.in_channels, stem_channels=w[0],
                       blocks=tuple(blocks), mix_channels=None,
                       num_classes=space.num_classes)


def largest(space: SearchSpace) -> SubnetChoice:
  n = space.max_blocks + 1
  return SubnetChoice((max(space.depths),) * space.num_stages,
                      (max(space.kernels),) * n, (max(space.expands),) * n)


def smallest(space: SearchSpace) -> SubnetChoice:
  n = space.max_blocks + 1
  return SubnetChoice((min(space.depths),) * space.num_stages,
                      (min(space.kernels),) * n, (min(space.expands),) * n)


def sample(space: SearchSpace, rng: np.random.Generator) -> SubnetChoice:
  """A uniformly random subnet of `space`."""
  n = space.max_blocks + 1
  return SubnetChoice(
      tuple(int(d) for d in rng.choice(space.depths, space.num_stages)),
      tuple(int(k) for k in rng.choice(space.kernels, n)),
      tuple(int(e) for e in rng.choice(space.expands, n)))


@dataclasses.dataclass(frozen=True)
class Budget:
  """MCU budgets in bytes; SRAM is checked against `sram_metric` of the
  profiler (the MCUNet rule by default)."""
  sram_bytes: int
  flash_bytes: int
  sram_metric: str = "peak_activation_bytes"

  @property
  def name(self) -> str:
    return f"sram{self.sram_bytes // 1024}k-flash{self.flash_bytes // 1024}k"

  @property
  def needs_sram_plan(self) -> bool:
    """Whether `fits` reads the memory planner's figure (costlier)."""
    return self.sram_metric == "sram_bytes"

  def fits(self, prof: dict) -> bool:
    return (prof[self.sram_metric] <= self.sram_bytes
            and prof["flash_bytes"] <= self.flash_bytes)


@dataclasses.dataclass
class SpaceStats:
  """Outcome of sampling one space under one budget."""
  space: SearchSpace
  num_sampled: int
  fitting_macs: np.ndarray           # MACs of the subnets that fit, sorted.

  @property
  def fit_fraction(self) -> float:
    return len(self.fitting_macs) / self.num_sampled

  @property
  def mean_macs(self) -> float:
    return float(self.fitting_macs.mean()) if len(self.fitting_macs) else 0.0

  def as_dict(self) -> dict:
    return {"space": self.space.name, "width_mult": self.space.width_mult,
            "resolution": self.space.resolution,
            "num_sampled": self.num_sampled,
            "num_fitting": int(len(self.fitting_macs)),
            "fit_fraction": self.fit_fraction,
            "mean_macs": self.mean_macs,
            "median_macs": (float(np.median(self.fitting_macs))
                            if len(self.fitting_macs) else 0.0)}


def grid(width_mults: Iterable[float], resolutions: Iterable[int],
         **kw) -> list[SearchSpace]:
  return [SearchSpace(float(w), int(r), **kw) for w in width_mults
          for r in resolutions]


def evaluate_space(space: SearchSpace, budget: Budget, num_samples: int,
                   rng: np.random.Generator) -> SpaceStats:
  macs = []
  for _ in range(num_samples):
    prof = profile_lib.profile(to_arch(space, sample(space, rng)),
                               sram=budget.needs_sram_plan)
    if budget.fits(prof):
      macs.append(prof["macs"])
  return SpaceStats(space, num_samples, np.sort(np.asarray(macs, np.float64)))


def optimise_spaces(spaces: Sequence[SearchSpace], budget: Budget,
                    num_samples: int, seed: int,
                    min_fit_fraction: float = 0.1) -> list[SpaceStats]:
  """Samples every space and returns their stats, best first.

  Best = largest mean MACs of the fitting subnets, among spaces where at least
  `min_fit_fraction` of the samples fit; the others rank after them (a space
  where a handful of samples fit would leave the supernet search only a
  corner of what it trains).
  """
  rng = np.random.default_rng(seed)
  stats = [evaluate_space(s, budget, num_samples, rng) for s in spaces]
  return sorted(stats, key=lambda st: (st.fit_fraction < min_fit_fraction,
                                       -st.mean_macs, -st.fit_fraction))


def plot_flops_cdf(stats: Sequence[SpaceStats], budget: Budget, path: str,
                   highlight: int = 1, min_fit_fraction: float = 0.0) -> None:
  """Per-space CDF of the MACs of fitting subnets (paper Fig. 3 style);
  spaces below `min_fit_fraction` are dashed."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from jaxtiny.train import plots

  fig, ax = plt.subplots(figsize=(7, 4.5))
  cmap = plt.get_cmap("viridis")
  ranked = [s for s in stats if len(s.fitting_macs)]
  for i, st in enumerate(ranked):
    y = np.arange(1, len(st.fitting_macs) + 1) / len(st.fitting_macs)
    best = i < highlight
    ax.plot(st.fitting_macs / 1e6, y, color="C3" if best else
            cmap(i / max(1, len(ranked) - 1)), lw=2.2 if best else 0.9,
            alpha=1.0 if best else 0.6,
            ls="--" if st.fit_fraction < min_fit_fraction else "-",
            label=(f"{st.space.name}: mean {st.mean_macs / 1e6:.2f}M, "
                   f"{100 * st.fit_fraction:.0f}% fit")
            if best or i < 6 else None)
  ax.set_xlabel("MMACs of subnets that fit")
  ax.set_ylabel("CDF")
  ax.set_title(f"Search spaces under {budget.sram_bytes // 1024} kB SRAM / "
               f"{budget.flash_bytes // 1024} kB Flash")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right")
  plots.save_figure(fig, path)
  plt.close(fig)
