"""Privacy accounting for GS-WGAN (host side; dp-accounting is the engine).

A GS-WGAN generator step picks one of K discriminators uniformly (each trained
on a disjoint shard of the data) and releases B sanitized gradients, one per
generated sample: each is clipped to norm C/B and gets Gaussian noise of std
2*sigma*C/B per coordinate (replace-one sensitivity 2C/B, so noise multiplier
sigma per released vector).

Two accountants:

* ``paper`` reproduces the authors' figure: T*B self-compositions of the
  Gaussian mechanism with noise multiplier sigma, subsampled without
  replacement with probability 1/K (replace-one neighbours), RDP analysis,
  converted to (epsilon, delta) with the classic bound
  ``eps = min_a rdp(a) + log(1/delta) / (a - 1)`` over the authors' orders
  ``1.1, 1.2, ..., 10.9, 12, ..., 63``. At sigma=1.07, K=1000, T=20000, B=32,
  delta=1e-5 this gives 9.99, the published value.
* ``strict`` (default) is the sound bound: the B vectors of one step all depend
  on the same shard, so one record can move all of them at once. Their joint
  L2 sensitivity is sqrt(B) * 2C/B against per-coordinate noise 2*sigma*C/B,
  i.e. one Gaussian mechanism with noise multiplier sigma/sqrt(B) per step,
  selected with probability 1/K, composed T times; RDP with dp-accounting's
  default orders and its tighter RDP-to-DP conversion.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Callable, Optional

import dp_accounting
from dp_accounting import rdp
import numpy as np

from jaxtiny import fileio

ACCOUNTANTS = ("paper", "strict")
PAPER_ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


class PrivacyBudgetError(ValueError):
  """A requested privacy budget cannot be met with the given settings."""


class LedgerMismatchError(ValueError):
  """A run would resume under other privacy-relevant settings than it used."""


def verify_resume(path: str, current: dict, resumed_at: int, unit: str,
                  planned: Optional[int] = None) -> None:
  """Refuses to resume a run whose privacy-relevant settings changed, or one
  that would end before its checkpoint.

  The ledgers account a run as `resumed_at + more` compositions of one
  mechanism; after a change of sigma, B, K, the sampling or delta midway that
  number would be wrong (too small when, say, sigma went up). So when a run
  resumes after `resumed_at` > 0 released steps (or rounds), the ledger at
  `path` must exist and record exactly the `current` settings. A run can be
  extended (more planned steps than its checkpoint) but not shortened: with
  `planned` < `resumed_at` the released model would have had `resumed_at`
  steps and the ledger would account `planned`.

  Raises:
    LedgerMismatchError: the ledger is missing, unreadable or records other
      settings, or `planned` is below `resumed_at`; the message lists what
      differs and says what to do.
  """
  if resumed_at <= 0:
    return
  if planned is not None and planned < resumed_at:
    raise LedgerMismatchError(
        f"cannot resume after {unit} {resumed_at} with {planned} {unit}s planned: the "
        f"checkpoint's model has already had {resumed_at} private {unit}s, and releasing "
        f"it with the privacy of {planned} would under-report epsilon. Plan at least "
        f"{resumed_at} {unit}s, or start a new --workdir.")
  fix = ("resume with the recorded settings, or start a new --workdir (the ledger "
         "composes one mechanism over the whole run and cannot account a change "
         "midway)")
  try:
    with open(path) as f:
      recorded = json.load(f)
  except (OSError, ValueError) as e:
    raise LedgerMismatchError(
        f"cannot resume after {unit} {resumed_at}: the privacy ledger {path} is "
        f"missing or unreadable ({e}), so the privacy already spent is unknown; "
        "start a new --workdir.") from None
  changed = [f"{k}: {recorded.get(k)!r} in the ledger, {v!r} now"
             for k, v in current.items() if recorded.get(k) != v]
  if changed:
    raise LedgerMismatchError(
        f"cannot resume after {unit} {resumed_at} with other privacy settings than "
        f"the run used ({'; '.join(changed)}; ledger {path}): {fix}.")


@dataclasses.dataclass(frozen=True)
class DpSettings:
  """The privacy-relevant settings of a GS-WGAN run.

  Attributes:
    noise_multiplier: sigma; noise std per coordinate is 2*sigma*C/B.
    num_discriminators: K, the number of disjoint shards.
    batch_size: B, generated samples per generator step.
    delta: target delta.
    accountant: "paper" or "strict".
  """
  noise_multiplier: float
  num_discriminators: int
  batch_size: int
  delta: float
  accountant: str = "strict"

  def __post_init__(self):
    _check(self.accountant, self.num_discriminators, self.batch_size, self.delta)
    if not self.noise_multiplier >= 0:
      raise ValueError(f"noise_multiplier={self.noise_multiplier} must be >= 0.")


def _check(accountant: str, k: int, b: int, delta: float) -> None:
  if accountant not in ACCOUNTANTS:
    raise ValueError(f"accountant={accountant!r}: use one of {', '.join(ACCOUNTANTS)}.")
  if k < 1 or b < 1:
    raise ValueError(f"discriminators={k} and batch_size={b} must be >= 1.")
  if not 0 < delta < 1:
    raise ValueError(f"delta={delta} must be in (0, 1).")


def dp_event(accountant: str, noise_multiplier: float, num_discriminators: int,
             batch_size: int, steps: int) -> dp_accounting.DpEvent:
  """The dp-accounting event for `steps` generator steps under `accountant`."""
  _check(accountant, num_discriminators, batch_size, 0.5)
  if accountant == "paper":
    sigma, count = noise_multiplier, steps * batch_size
  else:
    sigma, count = noise_multiplier / math.sqrt(batch_size), steps
  event = dp_accounting.GaussianDpEvent(sigma)
  if num_discriminators > 1:
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        num_discriminators, 1, event)
  return dp_accounting.SelfComposedDpEvent(event, count)


def _accountant(accountant: str) -> rdp.RdpAccountant:
  return rdp.RdpAccountant(
      orders=list(PAPER_ORDERS) if accountant == "paper" else None,
      neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)


def compute_epsilon(accountant: str, noise_multiplier: float,
                    num_discriminators: int, batch_size: int, steps: int,
                    delta: float) -> float:
  """Epsilon after `steps` generator steps (inf when sigma = 0 and steps > 0).

  Args:
    accountant: "paper" or "strict" (see the module docstring).
    noise_multiplier: sigma.
    num_discriminators: K.
    batch_size: B.
    steps: T, generator steps taken.
    delta: target delta.
  """
  _check(accountant, num_discriminators, batch_size, delta)
  if steps == 0:
    return 0.0
  if noise_multiplier == 0:
    return math.inf
  acc = _accountant(accountant)
  acc.compose(dp_event(accountant, noise_multiplier, num_discriminators,
                       batch_size, steps))
  if accountant == "paper":
    orders = np.asarray(PAPER_ORDERS)
    return float(np.min(acc.rdp + np.log(1.0 / delta) / (orders - 1.0)))
  return float(acc.get_epsilon(delta))


def smallest_noise(epsilon_of: Callable[[float], float], target_epsilon: float,
                   tol: float = 1e-4, limit: float = 1e6) -> Optional[float]:
  """Smallest sigma with epsilon_of(sigma) <= target (epsilon decreasing in
  sigma), to relative tolerance `tol`; None if no sigma up to `limit` meets it."""
  lo, hi = 0.0, 1.0
  while epsilon_of(hi) > target_epsilon:
    lo, hi = hi, hi * 2
    if hi > limit:
      return None
  while hi - lo > tol * max(hi, 1e-6):
    mid = 0.5 * (lo + hi)
    if epsilon_of(mid) > target_epsilon:
      lo = mid
    else:
      hi = mid
  return hi


def largest_count(epsilon_of: Callable[[int], float], target_epsilon: float,
                  limit: int) -> int:
  """Largest T <= limit with epsilon_of(T) <= target (epsilon increasing in
  T); 0 if none."""
  if epsilon_of(limit) <= target_epsilon:
    return limit
  lo, hi = 0, limit  # eps(lo) <= target < eps(hi)
  while hi - lo > 1:
    mid = (lo + hi) // 2
    if epsilon_of(mid) <= target_epsilon:
      lo = mid
    else:
      hi = mid
  return lo


def calibrate_noise(target_epsilon: float, delta: float, num_discriminators: int,
                    batch_size: int, steps: int, accountant: str = "strict",
                    tol: float = 1e-4) -> float:
  """Smallest noise multiplier sigma whose epsilon after `steps` is <= target.

  Raises:
    PrivacyBudgetError: no sigma up to 1e6 meets the target.
  """
  _check(accountant, num_discriminators, batch_size, delta)
  if target_epsilon <= 0:
    raise PrivacyBudgetError(f"target_epsilon={target_epsilon} must be > 0.")
  sigma = smallest_noise(lambda s: compute_epsilon(accountant, s, num_discriminators,
                                                   batch_size, steps, delta),
                         target_epsilon, tol)
  if sigma is None:
    raise PrivacyBudgetError(
        f"epsilon={target_epsilon} at delta={delta} cannot be met with "
        f"{steps} steps, K={num_discriminators}, B={batch_size} "
        f"({accountant} accountant) by any noise multiplier up to 1e6.")
  return sigma


def max_steps(settings: DpSettings, target_epsilon: float, limit: int) -> int:
  """Largest T <= limit with epsilon(T) <= target_epsilon (0 if none)."""
  return largest_count(
      lambda t: compute_epsilon(settings.accountant, settings.noise_multiplier,
                                settings.num_discriminators, settings.batch_size, t,
                                settings.delta), target_epsilon, limit)


class PrivacyLedger:
  """Writes `privacy.json` in a workdir: settings and the epsilon spent so far."""

  def __init__(self, workdir: str, settings: DpSettings,
               target_epsilon: Optional[float] = None):
    self.path = os.path.join(workdir, "privacy.json")
    self.settings = settings
    self.target_epsilon = target_epsilon

  def epsilon(self, steps: int) -> float:
    s = self.settings
    return compute_epsilon(s.accountant, s.noise_multiplier,
                           s.num_discriminators, s.batch_size, steps, s.delta)

  def settings_entry(self) -> dict:
    """The privacy-relevant settings as the ledger records them."""
    s = self.settings
    return {"accountant": s.accountant, "noise_multiplier": s.noise_multiplier,
            "discriminators": s.num_discriminators, "batch_size": s.batch_size,
            "delta": s.delta}

  def verify_resume(self, steps: int, planned: Optional[int] = None) -> None:
    """Raises LedgerMismatchError unless the ledger of a run resumed after
    `steps` generator steps records these settings and the run plans at least
    `steps` (see `verify_resume`)."""
    verify_resume(self.path, self.settings_entry(), steps, "generator step", planned)

  def record(self, steps: int) -> dict:
    """Computes epsilon after `steps` generator steps and writes the ledger."""
    s = self.settings
    eps = self.epsilon(steps)
    other = "paper" if s.accountant == "strict" else "strict"
    entry = {
        **self.settings_entry(), "steps": int(steps),
        "epsilon": eps if math.isfinite(eps) else "inf",
        "target_epsilon": self.target_epsilon,
        f"epsilon_{other}_accountant": _finite(compute_epsilon(
            other, s.noise_multiplier, s.num_discriminators, s.batch_size,
            steps, s.delta)),
    }
    fileio.atomic_write_json(self.path, entry)
    return entry


def _finite(x: float):
  return x if math.isfinite(x) else "inf"


def main(argv=None) -> int:
  """Command line: epsilon for a planned run, or the sigma that meets a target."""
  import argparse  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(
      prog="python -m jaxtiny.privacy.accounting",
      description="GS-WGAN privacy accounting: epsilon for a noise multiplier, "
                  "or the noise multiplier for a target epsilon.")
  p.add_argument("--accountant", choices=ACCOUNTANTS, default="strict")
  group = p.add_mutually_exclusive_group(required=True)
  group.add_argument("--noise_multiplier", type=float, help="sigma")
  group.add_argument("--target_epsilon", type=float)
  p.add_argument("--discriminators", type=int, default=1000, help="K")
  p.add_argument("--batch_size", type=int, default=32, help="B")
  p.add_argument("--steps", type=int, default=20000, help="T, generator steps")
  p.add_argument("--delta", type=float, default=1e-5)
  p.add_argument("--json", action="store_true", help="print one JSON object")
  args = p.parse_args(argv)
  try:
    if args.noise_multiplier is None:
      sigma = calibrate_noise(args.target_epsilon, args.delta, args.discriminators,
                              args.batch_size, args.steps, args.accountant)
    else:
      sigma = args.noise_multiplier
    eps = compute_epsilon(args.accountant, sigma, args.discriminators,
                          args.batch_size, args.steps, args.delta)
  except (ValueError, PrivacyBudgetError) as e:
    p.exit(2, f"error: {e}\n")
  out = {"accountant": args.accountant, "noise_multiplier": sigma,
         "epsilon": _finite(eps), "delta": args.delta, "steps": args.steps,
         "discriminators": args.discriminators, "batch_size": args.batch_size}
  if args.json:
    print(json.dumps(out))
  else:
    if args.target_epsilon is not None:
      print(f"noise multiplier sigma = {sigma:.4f} meets epsilon <= {args.target_epsilon}")
    print(f"epsilon = {eps:.4g} at delta = {args.delta:g} ({args.accountant} accountant; "
          f"sigma={sigma:.4g}, K={args.discriminators}, B={args.batch_size}, "
          f"T={args.steps})")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
