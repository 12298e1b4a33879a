"""User-level accountant: events, known figures from an independent engine,
calibration and the ledger."""

import dataclasses
import json
import math

import dp_accounting
from dp_accounting.pld import pld_privacy_accountant
import pytest

from jaxtiny.privacy import accounting
from jaxtiny.privacy import user_level

POISSON = user_level.UserDpSettings(noise_multiplier=1.0, num_users=1000, sampling="poisson",
                                    rate=0.01, delta=1e-5)


def _pld_epsilon(event, delta, relation):
  acc = pld_privacy_accountant.PLDAccountant(relation, value_discretization_interval=1e-4)
  acc.compose(event)
  return acc.get_epsilon(delta)


@pytest.mark.parametrize("sigma,rate,rounds", [(1.0, 0.01, 1000), (2.0, 0.05, 200),
                                               (0.8, 1.0, 10)])
def test_poisson_epsilon_matches_the_pld_engine(sigma, rate, rounds):
  """RDP is an upper bound on the exact (PLD) epsilon of the same mechanism and,
  at these settings, within 50% of it: a wrong noise multiplier or sampling
  rate in the event would break one side."""
  s = dataclasses.replace(POISSON, noise_multiplier=sigma, rate=rate)
  eps = user_level.compute_epsilon(s, rounds)
  inner = dp_accounting.GaussianDpEvent(sigma)
  event = inner if rate == 1 else dp_accounting.PoissonSampledDpEvent(rate, inner)
  exact = _pld_epsilon(dp_accounting.SelfComposedDpEvent(event, rounds), s.delta,
                       dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
  assert exact * 0.99 <= eps <= 1.5 * exact


def test_full_participation_is_the_gaussian_composition():
  # q = 1: T rounds of Gaussian(sigma) = one Gaussian(sigma / sqrt(T)); the
  # classic RDP bound min_a a/(2 s^2) + log(1/delta)/(a-1) is looser than
  # dp-accounting's conversion but of the same size.
  s = dataclasses.replace(POISSON, noise_multiplier=4.0, rate=1.0)
  eps = user_level.compute_epsilon(s, 16)
  s_eff = 4.0 / 4.0
  classic = min(a / (2 * s_eff ** 2) + math.log(1 / s.delta) / (a - 1)
                for a in [1 + i / 100 for i in range(1, 10000)])
  assert 0.8 * classic <= eps <= classic


def test_fixed_count_sampling_uses_replace_one_with_doubled_sensitivity():
  fixed = user_level.UserDpSettings(noise_multiplier=2.0, num_users=1000, sampling="fixed",
                                    users_per_round=10, delta=1e-5)
  assert fixed.sampling_probability == 0.01
  eps = user_level.compute_epsilon(fixed, 500)
  # One user of K per round is the centralized accountant's event with B = 1
  # (its "strict" accountant reproduces the GS-WGAN paper's figure): user-level
  # noise multiplier sigma against sensitivity 2S is the centralized sigma / 2.
  one = user_level.UserDpSettings(noise_multiplier=2.0, num_users=1000, sampling="fixed",
                                  users_per_round=1, delta=1e-5)
  assert user_level.compute_epsilon(one, 500) == pytest.approx(
      accounting.compute_epsilon("strict", 1.0, 1000, 1, 500, 1e-5), rel=1e-9)
  # Same rate and sigma: replace-one (sensitivity 2S) costs more than add/remove.
  poisson = dataclasses.replace(POISSON, noise_multiplier=2.0, rate=0.01)
  assert eps > user_level.compute_epsilon(poisson, 500)


def test_epsilon_properties():
  assert user_level.compute_epsilon(POISSON, 0) == 0.0
  assert user_level.compute_epsilon(dataclasses.replace(POISSON, noise_multiplier=0.0),
                                    5) == math.inf
  e1, e2 = (user_level.compute_epsilon(POISSON, t) for t in (100, 1000))
  assert e1 < e2
  assert user_level.compute_epsilon(dataclasses.replace(POISSON, noise_multiplier=3.0),
                                    1000) < e2
  # Against the server there is no amplification: far larger, even for the
  # expected number of participations.
  assert user_level.epsilon_vs_server(POISSON, 10) > user_level.compute_epsilon(POISSON, 1000)
  assert user_level.epsilon_vs_server(POISSON, 0) == 0.0


def test_calibration_round_trip_and_max_rounds():
  sigma = user_level.calibrate_noise(5.0, POISSON, 2000)
  s = dataclasses.replace(POISSON, noise_multiplier=sigma)
  assert user_level.compute_epsilon(s, 2000) <= 5.0
  below = dataclasses.replace(POISSON, noise_multiplier=sigma * 0.99)
  assert user_level.compute_epsilon(below, 2000) > 5.0
  t = user_level.max_rounds(s, 2.0, 2000)
  assert user_level.compute_epsilon(s, t) <= 2.0 < user_level.compute_epsilon(s, t + 1)
  with pytest.raises(user_level.PrivacyBudgetError, match="cannot be met"):
    user_level.calibrate_noise(1e-9, dataclasses.replace(POISSON, rate=1.0), 10 ** 6)


@pytest.mark.parametrize("kw,match", [
    (dict(sampling="uniform"), "sampling"), (dict(rate=0.0), "rate"),
    (dict(sampling="fixed", users_per_round=0), "users_per_round"),
    (dict(delta=1.0), "delta"), (dict(num_users=0), "num_users"),
    (dict(noise_multiplier=-1.0), "noise_multiplier")])
def test_bad_settings_are_refused(kw, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(POISSON, **kw)


def test_ledger_records_both_guarantees(tmp_path):
  ledger = user_level.UserLedger(str(tmp_path), POISSON, sensitivity=0.25, target_epsilon=8.0)
  entry = ledger.record(300, max_participations=7)
  assert json.loads((tmp_path / "privacy.json").read_text()) == entry
  assert entry["epsilon"] == pytest.approx(user_level.compute_epsilon(POISSON, 300))
  assert entry["epsilon_vs_server"] == pytest.approx(user_level.epsilon_vs_server(POISSON, 7))
  assert entry["noise_std_per_coordinate"] == pytest.approx(0.25)
  assert entry["rounds"] == 300 and entry["users"] == 1000


def test_ledger_refuses_a_resume_that_would_shorten_the_run(tmp_path):
  ledger = user_level.UserLedger(str(tmp_path), POISSON, sensitivity=0.25)
  ledger.record(300, max_participations=7)
  ledger.verify_resume(300, planned=300)
  ledger.verify_resume(300, planned=500)  # Extending: accounted as 500 rounds at the end.
  with pytest.raises(accounting.LedgerMismatchError,
                     match=r"round 300 with 200 rounds planned.*under-report epsilon"):
    ledger.verify_resume(300, planned=200)
