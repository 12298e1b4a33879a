"""User-level privacy accounting for federated training (host side).

Each round the server samples users; every sampled user uploads one vector
whose L2 norm is bounded by a known sensitivity S (whatever the number of
records the user holds) plus Gaussian noise of std ``noise_multiplier * S``
per coordinate, added on the user's device. Two guarantees are reported:

* ``epsilon`` -- the released model (and everything the server publishes)
  against an observer who does not see the sampling: one subsampled Gaussian
  event per round at the user sampling rate, composed over the rounds.
  Poisson sampling (each user independently with probability q) is analysed
  with add-or-remove-one-user neighbours: sensitivity S, noise multiplier
  sigma. Fixed-size sampling (m of U users without replacement) with
  replace-one-user neighbours: sensitivity 2S, noise multiplier sigma / 2.
  The other users' noise, which also covers each upload in the aggregate, is
  not counted (the bound holds even if every other user is dishonest).
* ``epsilon_vs_server`` -- one user against the server itself, which sees
  every individual upload and knows whom it sampled, so no amplification by
  subsampling applies: the user's data replaced by any other data moves its
  upload by at most 2S, i.e. a Gaussian mechanism with noise multiplier
  sigma / 2 composed once per round the user took part in. Reported for the
  user who took part most often.

dp-accounting's RDP accountant is the engine for both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Optional

from absl import logging
import dp_accounting
from dp_accounting import rdp

from jaxtiny import fileio
from jaxtiny.privacy import accounting

SAMPLING = ("poisson", "fixed")


class PrivacyBudgetError(ValueError):
  """A requested user-level budget cannot be met with the given settings."""


@dataclasses.dataclass(frozen=True)
class UserDpSettings:
  """The privacy-relevant settings of a federated run.

  Attributes:
    noise_multiplier: sigma; each upload gets noise std sigma * S per
      coordinate, S its norm bound.
    num_users: U, users in the population.
    sampling: "poisson" (rate q) or "fixed" (users_per_round of U per round).
    rate: q, the Poisson sampling probability (used when sampling="poisson").
    users_per_round: m (used when sampling="fixed").
    delta: target delta.
  """
  noise_multiplier: float
  num_users: int
  sampling: str = "poisson"
  rate: float = 0.0
  users_per_round: int = 0
  delta: float = 1e-5

  def __post_init__(self):
    if self.sampling not in SAMPLING:
      raise ValueError(f"sampling={self.sampling!r}: use 'poisson' or 'fixed'.")
    if self.num_users < 1:
      raise ValueError(f"num_users={self.num_users} must be >= 1.")
    if self.sampling == "poisson" and not 0 < self.rate <= 1:
      raise ValueError(f"Poisson sampling needs a rate in (0, 1]; got {self.rate}.")
    if self.sampling == "fixed" and not 1 <= self.users_per_round <= self.num_users:
      raise ValueError(f"users_per_round={self.users_per_round} must be in "
                       f"[1, num_users={self.num_users}].")
    if not 0 < self.delta < 1:
      raise ValueError(f"delta={self.delta} must be in (0, 1).")
    if not self.noise_multiplier >= 0:
      raise ValueError(f"noise_multiplier={self.noise_multiplier} must be >= 0.")

  @property
  def sampling_probability(self) -> float:
    """The probability that a given user is sampled in a round."""
    if self.sampling == "poisson":
      return self.rate
    return self.users_per_round / self.num_users

  @property
  def expected_users_per_round(self) -> float:
    return self.sampling_probability * self.num_users


def round_event(s: UserDpSettings) -> dp_accounting.DpEvent:
  """The dp-accounting event of one round for the released model."""
  if s.sampling == "poisson":
    inner = dp_accounting.GaussianDpEvent(s.noise_multiplier)
    return inner if s.rate == 1 else dp_accounting.PoissonSampledDpEvent(s.rate, inner)
  inner = dp_accounting.GaussianDpEvent(s.noise_multiplier / 2.0)
  if s.users_per_round == s.num_users:
    return inner
  return dp_accounting.SampledWithoutReplacementDpEvent(
      s.num_users, s.users_per_round, inner)


@contextlib.contextmanager
def _quiet():
  """dp-accounting warns for every fractional RDP order it cannot evaluate at
  large sampling rates and drops that order (the bound stays valid); keep
  those warnings out of training logs."""
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


def _relation(s: UserDpSettings):
  return (dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE if s.sampling == "poisson"
          else dp_accounting.NeighboringRelation.REPLACE_ONE)


def compute_epsilon(s: UserDpSettings, rounds: int) -> float:
  """User-level epsilon of the released model after `rounds` rounds (inf
  when sigma = 0 and rounds > 0)."""
  if rounds == 0:
    return 0.0
  if s.noise_multiplier == 0:
    return math.inf
  acc = rdp.RdpAccountant(neighboring_relation=_relation(s))
  with _quiet():
    acc.compose(dp_accounting.SelfComposedDpEvent(round_event(s), rounds))
    return float(acc.get_epsilon(s.delta))


def epsilon_vs_server(s: UserDpSettings, participations: int) -> float:
  """Epsilon of one user against the server after taking part
  `participations` times (no subsampling amplification)."""
  if participations == 0:
    return 0.0
  if s.noise_multiplier == 0:
    return math.inf
  acc = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
  acc.compose(dp_accounting.SelfComposedDpEvent(
      dp_accounting.GaussianDpEvent(s.noise_multiplier / 2.0), participations))
  return float(acc.get_epsilon(s.delta))


def calibrate_noise(target_epsilon: float, s: UserDpSettings, rounds: int,
                    tol: float = 1e-4) -> float:
  """Smallest sigma whose released-model epsilon after `rounds` is <= target
  (the noise_multiplier of `s` is ignored).

  Raises:
    PrivacyBudgetError: no sigma up to 1e6 meets the target.
  """
  if target_epsilon <= 0:
    raise PrivacyBudgetError(f"target_epsilon={target_epsilon} must be > 0.")
  sigma = accounting.smallest_noise(
      lambda sig: compute_epsilon(dataclasses.replace(s, noise_multiplier=sig), rounds),
      target_epsilon, tol)
  if sigma is None:
    raise PrivacyBudgetError(
        f"epsilon={target_epsilon} at delta={s.delta} cannot be met in {rounds} "
        f"rounds at sampling probability {s.sampling_probability:.4g} by any noise "
        "multiplier up to 1e6.")
  return sigma


def max_rounds(s: UserDpSettings, target_epsilon: float, limit: int) -> int:
  """Largest T <= limit with epsilon(T) <= target_epsilon (0 if none)."""
  return accounting.largest_count(lambda t: compute_epsilon(s, t), target_epsilon, limit)


def _finite(x: float):
  return x if math.isfinite(x) else "inf"


class UserLedger:
  """Writes `privacy.json` (user level) in a directory at every checkpoint."""

  def __init__(self, directory: str, settings: UserDpSettings, sensitivity: float,
               target_epsilon: Optional[float] = None):
    self.path = os.path.join(directory, "privacy.json")
    self.settings = settings
    self.sensitivity = sensitivity
    self.target_epsilon = target_epsilon

  def settings_entry(self) -> dict:
    """The privacy-relevant settings as the ledger records them."""
    s = self.settings
    return {"accountant": "user_level", "sampling": s.sampling,
            "sampling_probability": s.sampling_probability,
            "users": s.num_users, "noise_multiplier": s.noise_multiplier,
            "upload_norm_bound": self.sensitivity, "delta": s.delta}

  def verify_resume(self, rounds: int, planned: Optional[int] = None) -> None:
    """Raises accounting.LedgerMismatchError unless the ledger of a run resumed
    after `rounds` rounds records these settings and the run plans at least
    `rounds` (see `accounting.verify_resume`)."""
    accounting.verify_resume(self.path, self.settings_entry(), rounds, "round", planned)

  def record(self, rounds: int, max_participations: int) -> dict:
    """Computes both epsilons after `rounds` and writes the ledger."""
    s = self.settings
    entry = {
        **self.settings_entry(),
        "noise_std_per_coordinate": s.noise_multiplier * self.sensitivity,
        "rounds": int(rounds),
        "epsilon": _finite(compute_epsilon(s, rounds)),
        "max_participations": int(max_participations),
        "epsilon_vs_server": _finite(epsilon_vs_server(s, max_participations)),
        "target_epsilon": self.target_epsilon,
    }
    fileio.atomic_write_json(self.path, entry)
    return entry
