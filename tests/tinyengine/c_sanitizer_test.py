"""The C kernels under AddressSanitizer + UndefinedBehaviorSanitizer, through
a standalone driver fed with vectors from the integer reference."""

import shutil
import subprocess

import pytest

from jaxtiny.tinyengine import vectors


def test_kernels_under_asan_and_ubsan_match_reference(tmp_path):
  if shutil.which("cc") is None:
    pytest.fail("a C compiler (cc) is needed to test the C kernels.")
  exe = str(tmp_path / "tk_test")
  vectors.build_driver(exe, sanitize=True)
  vec = str(tmp_path / "vectors.bin")
  n = vectors.write_vectors(vec, cases_per_kind=120, seed=0)
  proc = subprocess.run([exe, vec], capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "runtime error" not in proc.stderr and "Sanitizer" not in proc.stderr
  assert proc.stdout.strip() == f"{n} cases, 0 failures"


def test_driver_reports_a_corrupted_expectation(tmp_path):
  # The driver really compares: flip one expected byte and it must fail.
  exe = str(tmp_path / "tk_test")
  vectors.build_driver(exe, sanitize=False)
  vec = tmp_path / "vectors.bin"
  vectors.write_vectors(str(vec), cases_per_kind=1, seed=1)
  data = bytearray(vec.read_bytes())
  data[-1] ^= 0x55                     # last record's last expected byte
  vec.write_bytes(bytes(data))
  proc = subprocess.run([exe, str(vec)], capture_output=True, text=True)
  assert proc.returncode == 1 and "expected" in proc.stderr
