import dataclasses
import json
import math

import pytest

from helpers import run_python
from jaxtiny.privacy import accounting

PAPER = dict(noise_multiplier=1.07, num_discriminators=1000, batch_size=32,
             steps=20000, delta=1e-5)


def test_paper_accountant_reproduces_published_epsilon():
  eps = accounting.compute_epsilon("paper", **PAPER)
  assert abs(eps - 10.0) / 10.0 < 0.10
  assert eps == pytest.approx(9.99, abs=0.01)  # The authors' tool reports 9.99.


def test_strict_accountant_is_far_larger_for_paper_settings():
  strict = accounting.compute_epsilon("strict", **PAPER)
  assert strict > 1000 * accounting.compute_epsilon("paper", **PAPER)


def test_strict_with_batch_one_is_the_paper_mechanism():
  # With B = 1 both accountants describe the same mechanism (T compositions of
  # a 1/K-subsampled Gaussian(sigma)); they differ only in orders/conversion,
  # and the strict conversion is the tighter one.
  kw = dict(PAPER, batch_size=1)
  strict = accounting.compute_epsilon("strict", **kw)
  paper = accounting.compute_epsilon("paper", **kw)
  assert strict <= paper and strict > 0.6 * paper


def test_epsilon_monotone_in_steps_and_noise():
  kw = dict(PAPER)
  e1 = accounting.compute_epsilon("strict", **{**kw, "steps": 100})
  e2 = accounting.compute_epsilon("strict", **{**kw, "steps": 1000})
  e3 = accounting.compute_epsilon("strict", **{**kw, "steps": 1000, "noise_multiplier": 5.0})
  assert e1 < e2 and e3 < e2
  assert accounting.compute_epsilon("strict", **{**kw, "steps": 0}) == 0.0
  assert math.isinf(accounting.compute_epsilon("strict", **{**kw, "noise_multiplier": 0.0}))


@pytest.mark.parametrize("acc,target", [("paper", 10.0), ("strict", 50.0)])
def test_calibration_round_trips(acc, target):
  kw = dict(num_discriminators=1000, batch_size=32, steps=2000, delta=1e-5)
  sigma = accounting.calibrate_noise(target, accountant=acc, **kw)
  eps = accounting.compute_epsilon(acc, sigma, **kw)
  assert eps <= target and eps > target * 0.995
  # A slightly smaller sigma overspends.
  assert accounting.compute_epsilon(acc, sigma * 0.99, **kw) > target


def test_impossible_budget_is_a_clear_error():
  with pytest.raises(accounting.PrivacyBudgetError, match="must be > 0"):
    accounting.calibrate_noise(0.0, 1e-5, 10, 32, 100)
  with pytest.raises(ValueError, match="accountant='rdp'"):
    accounting.compute_epsilon("rdp", **PAPER)


def test_max_steps_stops_at_target():
  s = accounting.DpSettings(1.07, 1000, 32, 1e-5, "paper")
  t = accounting.max_steps(s, 5.0, 20000)
  assert 0 < t < 20000
  eps = lambda n: accounting.compute_epsilon("paper", 1.07, 1000, 32, n, 1e-5)
  assert eps(t) <= 5.0 < eps(t + 1)


def test_ledger_file(tmp_path):
  s = accounting.DpSettings(1.07, 1000, 32, 1e-5, "strict")
  ledger = accounting.PrivacyLedger(str(tmp_path), s, target_epsilon=None)
  entry = ledger.record(100)
  on_disk = json.loads((tmp_path / "privacy.json").read_text())
  assert on_disk == entry
  assert entry["accountant"] == "strict" and entry["steps"] == 100
  assert entry["epsilon"] == pytest.approx(
      accounting.compute_epsilon("strict", 1.07, 1000, 32, 100, 1e-5))
  assert entry["epsilon_paper_accountant"] < entry["epsilon"]


def test_cli_json_and_calibration():
  out = run_python(["-m", "jaxtiny.privacy.accounting", "--accountant=paper",
                    "--noise_multiplier=1.07", "--discriminators=1000",
                    "--batch_size=32", "--steps=20000", "--delta=1e-5", "--json"])
  got = json.loads(out.stdout)
  assert set(got) == {"accountant", "noise_multiplier", "epsilon", "delta", "steps",
                      "discriminators", "batch_size"}
  assert got["epsilon"] == pytest.approx(9.99, abs=0.01)
  out = run_python(["-m", "jaxtiny.privacy.accounting", "--accountant=paper",
                    "--target_epsilon=10", "--json"])
  assert json.loads(out.stdout)["noise_multiplier"] == pytest.approx(1.07, abs=0.005)
  bad = run_python(["-m", "jaxtiny.privacy.accounting", "--noise_multiplier=1",
                    "--delta=2"], check=False)
  assert bad.returncode == 2 and "delta=2.0 must be in (0, 1)" in bad.stderr


def test_resume_is_refused_unless_the_ledger_records_the_same_settings(tmp_path):
  settings = accounting.DpSettings(noise_multiplier=1.07, num_discriminators=1000,
                                   batch_size=32, delta=1e-5, accountant="strict")
  ledger = accounting.PrivacyLedger(str(tmp_path), settings)
  # Nothing released yet: nothing to check, whatever is (not) on disk.
  ledger.verify_resume(0)
  with pytest.raises(accounting.LedgerMismatchError, match="missing or unreadable"):
    ledger.verify_resume(100)
  ledger.record(100)
  ledger.verify_resume(100)
  ledger.verify_resume(100, planned=100)
  ledger.verify_resume(100, planned=300)  # Extending a run is fine...
  with pytest.raises(accounting.LedgerMismatchError,  # ...shortening it is not.
                     match=r"step 100 with 99 generator steps planned.*under-report"):
    ledger.verify_resume(100, planned=99)
  for change in ({"noise_multiplier": 1.5}, {"batch_size": 16}, {"num_discriminators": 10},
                 {"delta": 1e-6}, {"accountant": "paper"}):
    other = accounting.PrivacyLedger(str(tmp_path), dataclasses.replace(settings, **change))
    (name,) = change
    key = {"num_discriminators": "discriminators"}.get(name, name)
    with pytest.raises(accounting.LedgerMismatchError, match=f"{key}: "):
      other.verify_resume(100)
    other.verify_resume(0)  # A fresh start in the same workdir is not a resume.
