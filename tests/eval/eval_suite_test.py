"""Table and curve writers, the CLI's errors, and (slow) a --fast evaluation."""

import json
import os
import shutil

import numpy as np
import pytest

from helpers import require_prepared, run_python
from jaxtiny import data
from jaxtiny.eval import generated
from jaxtiny.eval import metrics
from jaxtiny.eval import suite


def _record(eps, cnn, is_mean, fast=False):
  return {"dataset": "mnist", "n_samples": 60000, "is_mean": is_mean, "is_std": 0.1,
          "fid_lenet": 12.5, "mlp_acc": 0.8, "cnn_acc": cnn, "avg_acc": 0.6,
          "calibrated_acc": 0.6 / 0.88, "per_model": {}, "fast": fast, "epsilon": eps,
          "accountant": "paper", "run": {"generator": "dcgan", "discriminators": 10,
                                         "steps": 2000, "noise_multiplier": 0.5}}


def test_markdown_row_matches_the_paper_columns():
  row = suite.markdown_row(_record(9.99, 0.8, 9.23), name="run1")
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells == ["run1 [dcgan, K=10, T=2000, sigma=0.5]", "9.23 ± 0.10", "12.50",
                   "skipped", "0.80", "0.80", "0.60", "68%", "9.99", "paper"]
  header = suite.markdown_header().splitlines()[0]
  assert [c.strip() for c in header.strip("|").split("|")] == [
      "run", "IS", "FID (LeNet features)", "FID (Inception-v3)", "MLP", "CNN", "Avg", "Calibrated", "epsilon",
      "accountant"]
  assert "(fast)" in suite.markdown_row(_record("inf", 0.9, 9.0, fast=True), "r")
  with_inception = dict(_record(9.99, 0.8, 9.23), fid_inception=60.756)
  assert "| 12.50 | 60.76 | 0.80 |" in suite.markdown_row(with_inception, "r")


def test_table_and_curve_from_run_folders(tmp_path):
  for i, (eps, cnn, is_mean) in enumerate([(1.0, 0.4, 5.0), (10.0, 0.8, 9.2),
                                           ("inf", 0.99, 9.8)]):
    run = tmp_path / "sweep" / f"run{i}"
    run.mkdir(parents=True)
    (run / "eval.json").write_text(json.dumps(_record(eps, cnn, is_mean)))
  (tmp_path / "sweep" / "not_a_run").mkdir()
  out = run_python(["-m", "experiments.evaluate", "--table", str(tmp_path / "sweep")])
  lines = [l for l in out.stdout.splitlines() if l.startswith("| run")]
  assert len(lines) == 4 and "| run0 " in out.stdout and "| inf |" in out.stdout
  png = tmp_path / "curve.png"
  out = run_python(["-m", "experiments.evaluate", f"--curve={png}", str(tmp_path / "sweep")])
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "2 runs" in out.stdout


def test_table_and_curve_from_federated_workdirs(tmp_path):
  # experiments.gswgan_federated writes <workdir>/<method>/eval/eval.json.
  for wd, eps_gs, eps_fa in (("fed_a", 236.0, 236.0), ("fed_b", 30000.0, 5.5e6)):
    for method, eps in (("gswgan", eps_gs), ("fedavg_gan", eps_fa)):
      d = tmp_path / wd / method / "eval"
      d.mkdir(parents=True)
      rec = _record(eps, 0.5, 3.0)
      rec["source"] = str(tmp_path / wd / method / "gen_data.npz")
      (d / "eval.json").write_text(json.dumps(rec))
  found = suite.collect([str(tmp_path / "fed_a"), str(tmp_path / "fed_b" / "gswgan")])
  assert [n for n, _ in found] == ["fed_a/fedavg_gan", "fed_a/gswgan", "fed_b/gswgan"]
  assert [suite.method_of(r) for _, r in found] == ["DP-FedAvg-GAN", "GS-WGAN", "GS-WGAN"]
  png = tmp_path / "curve.png"
  out = run_python(["-m", "experiments.evaluate", f"--curve={png}", str(tmp_path / "fed_a"),
                    str(tmp_path / "fed_b")])
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "4 runs" in out.stdout


def test_table_groups_runs_that_differ_only_in_their_seed(tmp_path):
  # Three seeds of one setting, one run of another setting, one run without a
  # config.json: three rows, the first with mean ± sample std over its seeds.
  base = {"seed": 0, "rounds": 2000, "ema_decay": 0.999, "progress_interval_s": 10.0}
  runs = [("gs_s0", dict(base, seed=0), 0.80), ("gs_s1", dict(base, seed=1), 0.82),
          ("gs_s2", dict(base, seed=2, progress_interval_s=30.0), 0.84),
          ("gs_ema995", dict(base, ema_decay=0.995), 0.70), ("no_config", None, 0.5)]
  for wd, config, cnn in runs:
    d = tmp_path / wd / "gswgan" / "eval"
    d.mkdir(parents=True)
    rec = _record(1e6, cnn, 8.0 + cnn)
    rec["source"] = str(tmp_path / wd / "gswgan" / "gen_data.npz")
    (d / "eval.json").write_text(json.dumps(rec))
    if config is not None:
      (tmp_path / wd / "config.json").write_text(json.dumps(config))
  workdirs = [str(tmp_path / wd) for wd, _, _ in runs]  # As the shell expands runs/*.
  groups = suite.group_by_seed(suite.collect_files(workdirs))
  assert [(n, len(rs), seeds) for n, rs, seeds in groups] == [
      ("gs_s0/gswgan", 3, [0, 1, 2]), ("gs_ema995/gswgan", 1, [0]),
      ("no_config/gswgan", 1, [None])]
  out = run_python(["-m", "experiments.evaluate", "--table", "--group_seeds"] + workdirs)
  rows = [l for l in out.stdout.splitlines() if l.startswith("| gs_") or l.startswith("| no_")]
  assert len(rows) == 3
  cells = [c.strip() for c in rows[0].strip("|").split("|")]
  assert cells[0].endswith("(3 seeds: 0, 1, 2)")
  assert cells[1] == "8.82 ± 0.02" and cells[5] == "0.820 ± 0.020"  # std with n - 1
  assert "| 0.70 |" in rows[1]  # A single run keeps the ungrouped row.
  # The same run scored with a pixel floor is another row, labelled with it.
  floored = _record(1e6, 0.9, 8.9)
  floored["source"] = str(tmp_path / "gs_s0" / "gswgan" / "gen_data.npz")
  floored["run"]["pixel_floor"] = 0.05
  (tmp_path / "gs_s0" / "gswgan" / "pixel_floor_0.05").mkdir()
  (tmp_path / "gs_s0" / "gswgan" / "pixel_floor_0.05" / "eval.json").write_text(
      json.dumps(floored))
  files = suite.collect_files(workdirs + [str(tmp_path / "gs_s0" / "gswgan" / "pixel_floor_0.05")])
  groups = suite.group_by_seed(files)
  assert [(n, len(rs)) for n, rs, _ in groups][-1] == ("gs_s0/gswgan/pixel_floor_0.05", 1)
  assert len(groups[0][1]) == 3
  assert "pixel floor 0.05" in suite.markdown_row(floored, "x")
  out = run_python(["-m", "experiments.evaluate", "--group_seeds", "--gen=x",
                    "--dataset=mnist"], check=False)
  assert out.returncode != 0 and "--group_seeds only applies to --table" in out.stderr


def test_label_accuracy_per_label_table_and_chart(tmp_path):
  # Two seeds of GS-WGAN, one baseline run (it drew no 2s): the table gives
  # each label's mean ± sample std over seeds, the chart is written.
  per_class = {"gs_s0": [1.0, 0.9, 0.8], "gs_s1": [0.8, 0.7, 0.6], "fa_s0": [0.5, 0.4, None]}
  for wd, acc in per_class.items():
    method = "fedavg_gan" if wd.startswith("fa") else "gswgan"
    d = tmp_path / wd / method / "eval"
    d.mkdir(parents=True)
    rec = dict(_record(1e6, 0.8, 8.0), label_acc_per_class=acc)
    rec["source"] = str(tmp_path / wd / method / "gen_data.npz")
    (d / "eval.json").write_text(json.dumps(rec))
    (tmp_path / wd / "config.json").write_text(json.dumps({"seed": int(wd[-1]), "rounds": 2}))
  workdirs = [str(tmp_path / wd) for wd in per_class]
  groups = suite.label_accuracy_groups(suite.collect_files(workdirs))
  assert [(n, a.shape, s) for n, a, s in groups] == [("gs_s0/gswgan", (2, 3), [0, 1]),
                                                     ("fa_s0/fedavg_gan", (1, 3), [0])]
  assert np.isnan(groups[1][1][0, 2])
  mean, std = suite.seed_mean_std(np.array([[1.0, np.nan, np.nan], [0.5, 0.2, np.nan]]))
  np.testing.assert_allclose(mean[:2], [0.75, 0.2])
  np.testing.assert_allclose(std[0], np.std([1.0, 0.5], ddof=1))
  assert np.isnan(mean[2]) and np.isnan(std[1]) and np.isnan(std[2])
  png = tmp_path / "labels.png"
  out = run_python(["-m", "experiments.evaluate", f"--labels={png}"] + workdirs)
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "3 runs, 2 groups" in out.stdout
  rows = {l.split("|")[1].strip(): [c.strip() for c in l.strip("|").split("|")[1:]]
          for l in out.stdout.splitlines() if l.startswith("| ") and "---" not in l}
  assert rows["run"] == ["0", "1", "2", "mean of labels"]
  assert rows["gs_s0/gswgan (2 seeds: 0, 1)"] == [
      "0.900 ± 0.141", "0.800 ± 0.141", "0.700 ± 0.141", "0.800 ± 0.141"]
  assert rows["fa_s0/fedavg_gan"] == ["0.500", "0.400", "-", "0.450"]
  # An eval.json scored before the breakdown existed: say so and how to fix it.
  rec = _record(1e6, 0.8, 8.0)
  rec["source"] = str(tmp_path / "old" / "gswgan" / "gen_data.npz")
  (tmp_path / "old" / "gswgan" / "eval").mkdir(parents=True)
  (tmp_path / "old" / "gswgan" / "eval" / "eval.json").write_text(json.dumps(rec))
  out = run_python(["-m", "experiments.evaluate", f"--labels={tmp_path / 'x.png'}",
                    str(tmp_path / "old")], check=False)
  assert out.returncode != 0 and "score it again" in out.stderr
  assert not (tmp_path / "x.png").exists()


def test_cli_reports_bad_input_clearly(tmp_path):
  np.savez(tmp_path / "bad.npz", images=np.zeros((3, 28, 28)))
  out = run_python(["-m", "experiments.evaluate", f"--gen={tmp_path / 'bad.npz'}",
                    "--dataset=mnist"], check=False)
  assert out.returncode != 0 and "not 'x' and 'y'" in out.stderr
  out = run_python(["-m", "experiments.evaluate", f"--gen={tmp_path}", "--dataset=mnist"],
                   check=False)
  assert out.returncode != 0 and "has no gen_data.npz" in out.stderr
  out = run_python(["-m", "experiments.evaluate", "--table", str(tmp_path)], check=False)
  assert out.returncode != 0 and "no eval.json" in out.stderr
  np.savez(tmp_path / "ok.npz", x=np.zeros((20, 28, 28), np.float32), y=np.arange(20) % 10)
  out = run_python(["-m", "experiments.evaluate", f"--gen={tmp_path / 'ok.npz'}",
                    "--dataset=mnist", f"--inception_weights={tmp_path / 'nope.pth'}"],
                   check=False)
  assert out.returncode != 0 and "nope.pth does not exist" in out.stderr
  out = run_python(["-m", "experiments.evaluate", f"--gen={tmp_path / 'ok.npz'}",
                    "--dataset=mnist", "--pixel_floor=1.5"], check=False)
  assert out.returncode != 0 and "pixel floor must be a number in (0, 1)" in out.stderr
  out = run_python(["-m", "experiments.evaluate", "--gen=real", "--dataset=mnist",
                    "--pixel_floor=0.05"], check=False)
  assert out.returncode != 0 and "the Real row" in out.stderr
  np.savez(tmp_path / "wrong.npz", a=np.zeros(3))
  out = run_python(["-m", "experiments.evaluate", f"--gen={tmp_path / 'ok.npz'}",
                    "--dataset=mnist", f"--inception_weights={tmp_path / 'wrong.npz'}"],
                   check=False)
  assert out.returncode != 0 and "not the FID Inception-v3 weights" in out.stderr


def test_cli_background_report(tmp_path):
  """--background prints the samples' values on the real test set's blank
  pixels and writes nothing; black-background samples have no class signal."""
  require_prepared("mnist")
  real_x, real_y = data.load("mnist", "test")
  x = real_x[:200].reshape(200, -1).astype(np.float32) / 255.0
  x[:, 0] = 0.02 * (real_y[:200] % 10)  # A corner pixel that encodes the class.
  np.savez(tmp_path / "gen.npz", x=x.reshape(200, 28, 28), y=real_y[:200])
  out = run_python(["-m", "experiments.evaluate", f"--gen={tmp_path / 'gen.npz'}",
                    "--dataset=mnist", "--background"])
  line = out.stdout.strip().splitlines()[-1]
  assert line.startswith(str(tmp_path / "gen.npz"))
  stats = dict(kv.rsplit(" ", 1) for kv in line.split(": ", 1)[1].split(", "))
  assert 0 < float(stats["gen_background_mean"]) < 0.01
  assert float(stats["class_signal"]) > 0
  assert sorted(os.listdir(tmp_path)) == ["gen.npz"]
  out = run_python(["-m", "experiments.evaluate", "--gen=real", "--dataset=mnist",
                    "--background"], check=False)
  assert out.returncode != 0 and "--background compares" in out.stderr


def test_missing_classifier_names_the_training_command(tmp_path):
  require_prepared("mnist")
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  os.symlink(os.path.join(data.data_dir(), "mnist"), data_dir / "mnist")
  np.savez(tmp_path / "gen.npz", x=np.zeros((20, 28, 28), np.float32), y=np.arange(20) % 10)
  out = run_python(["-m", "experiments.evaluate", f"--gen={tmp_path / 'gen.npz'}",
                    "--dataset=mnist", "--fast"], env={"JAXTINY_DATA": str(data_dir)},
                   check=False)
  assert out.returncode != 0
  assert "python -m experiments.classifier --config=experiments/configs/classifier.py:mnist" \
      in out.stderr


def _write_partials(out):
  (out / "eval_partial.json").write_text(json.dumps({"per_model": {"MLP": 0.5}, "fast": True}))
  (out / "eval_cnn").mkdir(exist_ok=True)
  (out / "eval_cnn" / "ckpt_1.npz").write_bytes(b"x")
  np.savez(out / "eval_inception.partial.npz", done=np.array(1), total=np.array(2))


def test_partial_results_of_another_set_or_protocol_are_discarded(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.random((20, 28, 28, 1), dtype=np.float32)
  y = np.arange(20, dtype=np.int32) % 10
  digest = suite.fingerprint(generated.GeneratedSet(x, y, "a.npz"))
  # The fingerprint is of the content, not of the file name.
  assert digest == suite.fingerprint(generated.GeneratedSet(x.copy(), y.copy(), "b.npz"))
  x2 = x.copy()
  x2[3, 10, 10, 0] += 1e-3
  y2 = y.copy()
  y2[0] = 1
  others = {suite.fingerprint(generated.GeneratedSet(x2, y, "a.npz")),
            suite.fingerprint(generated.GeneratedSet(x, y2, "a.npz"))}
  assert digest not in others and len(others) == 2
  out = tmp_path / "eval"
  logs = []
  assert suite.claim_out_dir(str(out), digest, True, logs.append) == []
  _write_partials(out)
  # Same set and protocol: an interrupted evaluation resumes from its partials.
  assert suite.claim_out_dir(str(out), digest, True, logs.append) == []
  assert (out / "eval_cnn" / "ckpt_1.npz").exists() and not logs
  # Another set: everything partial goes, and the log says why.
  removed = suite.claim_out_dir(str(out), others.pop(), True, logs.append)
  assert sorted(removed) == sorted(suite.PARTIAL_RESULTS)
  assert not any((out / n).exists() for n in suite.PARTIAL_RESULTS)
  assert "different generated set" in logs[-1]
  # The other protocol (fast -> full) on the same set.
  digest = json.loads((out / suite.SOURCE_MARKER).read_text())["sha256"]
  _write_partials(out)
  assert sorted(suite.claim_out_dir(str(out), digest, False, logs.append)) == sorted(
      suite.PARTIAL_RESULTS)
  assert "fast protocol" in logs[-1]
  # Partials without a marker (an older version's) are not trusted either.
  _write_partials(out)
  (out / suite.SOURCE_MARKER).unlink()
  assert len(suite.claim_out_dir(str(out), digest, False, logs.append)) == 3


@pytest.mark.slow
def test_fast_evaluation_end_to_end(tmp_path):
  """--fast on 2,000 real test images posing as generated data, with a quick
  classifier standing in for the reference one."""
  require_prepared("mnist")
  from experiments.configs import classifier as classifier_config
  from jaxtiny.classifier import train
  data_dir = tmp_path / "data"
  (data_dir / "classifiers").mkdir(parents=True)
  os.symlink(os.path.join(data.data_dir(), "mnist"), data_dir / "mnist")
  config = classifier_config.get_config("smoke")
  with config.unlocked():  # ~95 % test accuracy, confident enough for a real IS.
    config.num_train_examples, config.num_epochs, config.batch_size = 12000, 3, 64
    config.model.conv_features, config.model.hidden = (8, 16), 64
  train.train_and_evaluate(config, str(tmp_path / "clf"))
  shutil.copy(tmp_path / "clf" / "classifier.npz", data_dir / "classifiers" / "mnist.npz")
  x, y = data.load("mnist", "test")
  run = tmp_path / "run"
  run.mkdir()
  np.savez(run / "gen_data.npz", x=x[:2000].astype(np.float32) / 255.0, y=y[:2000])
  (run / "privacy.json").write_text(json.dumps({"accountant": "strict", "epsilon": 5.0}))
  run_python(["-m", "experiments.evaluate", f"--gen={run}", "--dataset=mnist", "--fast"],
             env={"JAXTINY_DATA": str(data_dir)}, timeout=1800)
  record = json.loads((run / "eval.json").read_text())
  assert record["fast"] and record["epsilon"] == 5.0 and record["fid_inception"] is None
  assert len(record["per_model"]) == 6 and record["cnn_acc"] > 0.8
  # IS over 10 splits of 200 samples (fast mode on 2,000 samples).
  assert record["is_mean"] > 6 and 0.7 < record["calibrated_acc"] < 1.2
  # Real test digits vary within a class as much as the real training digits.
  assert record["intra_class_l2"] == pytest.approx(record["real_intra_class_l2"], rel=0.05)
  assert record["real_intra_class_l2"] > 5
  # The per-label breakdown of label accuracy agrees with the overall figure.
  counts = np.array(record["label_confusion"])
  assert counts.shape == (10, 10) and counts.sum() == 2000
  assert np.trace(counts) / 2000 == pytest.approx(record["label_acc"])
  assert record["label_acc_per_class"] == pytest.approx(np.diag(counts) / counts.sum(1))
  assert min(record["label_acc_per_class"]) > 0.7  # Real digits, a ~95 % classifier.
  assert len(record["label_misread"]) == 10
  assert (run / "eval_row.md").read_text().count("|") > 10
  # A run resumed for more steps rewrites gen_data.npz: the second evaluation
  # must not reuse the first one's CNN or scikit-learn results.
  np.savez(run / "gen_data.npz", x=x[2000:4000].astype(np.float32) / 255.0, y=y[2000:4000])
  out = run_python(["-m", "experiments.evaluate", f"--gen={run}", "--dataset=mnist", "--fast"],
                   env={"JAXTINY_DATA": str(data_dir)}, timeout=1800)
  assert "discarded partial results" in out.stdout + out.stderr
  second = json.loads((run / "eval.json").read_text())
  assert second["source_sha256"] != record["source_sha256"]
  assert second["per_model"] != record["per_model"]


def test_label_summary_names_the_common_misreadings():
  counts = np.diag([90, 100, 80])
  counts[0, 2], counts[2, 1], counts[2, 0] = 10, 16, 4  # 0 as 2 10 %; 2 as 1 16 %, as 0 4 %.
  quality = {"label_acc": float(np.trace(counts) / counts.sum()),
             **metrics.label_report(counts)}
  line = suite.label_summary(quality)
  assert line.startswith("label accuracy per label (0.900 overall): 0:0.90 1:1.00 2:0.80")
  # Largest first; below 5 % of a label's samples is not named.
  assert line.endswith("misread: 2 as 1 16%, 0 as 2 10%")
  assert "misread" not in suite.label_summary(
      {"label_acc": 1.0, **metrics.label_report(np.diag([5, 5]))})
