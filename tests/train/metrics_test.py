import io
import json

import jax.numpy as jnp
import numpy as np

from jaxtiny.train import metrics
from jaxtiny.train import plots


def test_writer_appends_json_lines_and_converts_arrays(tmp_path):
  w = metrics.MetricWriter(str(tmp_path))
  w.write(1, {"loss": jnp.float32(0.5), "acc": np.float64(0.25), "n": 3})
  w.write(2, {"loss": float("nan")})
  records = metrics.read_metrics(str(tmp_path / "metrics.jsonl"))
  assert records == [{"step": 1, "loss": 0.5, "acc": 0.25, "n": 3},
                     {"step": 2, "loss": "nan"}]


def test_resume_drops_records_after_the_checkpoint(tmp_path):
  w = metrics.MetricWriter(str(tmp_path))
  for s in range(1, 8):
    w.write(s, {"loss": s})
  w = metrics.MetricWriter(str(tmp_path), resume_step=4)
  w.write(5, {"loss": 50})
  steps = [r["step"] for r in metrics.read_metrics(str(tmp_path / "metrics.jsonl"))]
  assert steps == [1, 2, 3, 4, 5]
  # A fresh (non-resumed) run starts the log anew.
  metrics.MetricWriter(str(tmp_path))
  assert metrics.read_metrics(str(tmp_path / "metrics.jsonl")) == []


def test_torn_last_line_is_ignored(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text(json.dumps({"step": 1}) + "\n" + '{"step": 2, "lo')
  assert metrics.read_metrics(str(path)) == [{"step": 1}]


def test_progress_line_shows_step_rate_eta_and_metrics():
  out = io.StringIO()
  p = metrics.Progress(100, start_step=0, desc="job", interval=0.0, stream=out)
  p.update(10, {"loss": 0.123456})
  p.close(100)
  text = out.getvalue()
  assert "job step 10/100" in text and "steps/s" in text and "ETA" in text
  assert "loss 0.1235" in text and "done: 100 steps" in text


def test_progress_due_says_whether_update_would_print():
  out = io.StringIO()
  p = metrics.Progress(100, desc="job", interval=3600.0, stream=out)
  assert p.due()  # Nothing printed yet.
  p.update(1)
  assert not p.due()
  p.update(2)  # Within the interval: not printed, as due() said.
  assert out.getvalue().count("job step") == 1


def test_plots_write_pngs(tmp_path):
  grid = plots.tile_images(np.zeros((10, 28, 28), np.uint8), ncols=5)
  assert grid.shape == (2 * 29 - 1, 5 * 29 - 1)
  plots.save_image_grid(str(tmp_path / "g.png"), np.random.rand(16, 28, 28, 1))
  plots.save_line_plot(str(tmp_path / "l.png"), {"a": ([1, 2, 3], [3, 2, 1]),
                                                 "b": ([1, 2, 3], [1, 2, 3])}, logy=True)
  for name in ("g.png", "l.png"):
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
