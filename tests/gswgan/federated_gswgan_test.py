"""Federated GS-WGAN: user-level bound and noise, per-sample gradients, the
server update, payloads, and a smoke run of both methods with resume."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import pytest

from experiments.configs import gswgan_federated as fed_config
from helpers import require_prepared
from helpers import train_quick_classifier
from jaxtiny import data
from jaxtiny.eval import metrics
from jaxtiny.gswgan import federated
from jaxtiny.gswgan import models
from jaxtiny.gswgan import steps
from jaxtiny.privacy import accounting
from jaxtiny.privacy import sanitizer
from jaxtiny.privacy import user_level
from jaxtiny.train import checkpoint

B = 8
DISC = models.Discriminator()
GEN = models.make_generator("dcgan")
TX = steps.make_optimizer()
KW = dict(disc=DISC, tx=TX, gp_weight=10.0, drift=1e-3)


def _user_inputs(num_records, scale=1.0, seed=0):
  """A user's critic batches drawn from `num_records` records, and received samples."""
  rng = np.random.default_rng(seed)
  records = rng.uniform(0, 1, (num_records, 28, 28, 1)).astype(np.float32) * scale
  rec_y = rng.integers(0, 10, num_records)
  idx = federated.user_batches(np.arange(num_records), 2, B, rng)
  fake_x = jnp.asarray(rng.uniform(0, 1, (B, 28, 28, 1)), jnp.float32)
  fake_y = jnp.asarray(rng.integers(0, 10, B), jnp.int32)
  return jnp.asarray(records[idx]), jnp.asarray(rec_y[idx]), fake_x, fake_y


@pytest.fixture(scope="module")
def disc_state():
  return steps.init_net(jax.random.key(0), DISC, TX)


@pytest.mark.parametrize("num_records,scale", [(1, 1.0), (600, 1.0), (600, 1e4)])
def test_user_upload_bound_does_not_depend_on_the_users_records(disc_state, num_records,
                                                                scale):
  c = 1e-3  # Below the raw gradients' norms, so the clip is active.
  real_x, real_y, fake_x, fake_y = _user_inputs(num_records, scale)
  mask = jnp.ones(10)
  d, up, _ = federated.user_round(disc_state, real_x, real_y, fake_x, fake_y, mask,
                                  jax.random.key(1), clip_norm=c, noise_multiplier=0.0, **KW)
  norms = np.asarray(sanitizer.per_example_norms(up))
  assert norms.max() <= c * (1 + 1e-5)
  assert np.linalg.norm(np.asarray(up)) <= sanitizer.user_upload_bound(B, c) * (1 + 1e-5)
  raw = federated.sample_gradients(d.params, d.model_state, fake_x, fake_y,
                                   jnp.ones(B), disc=DISC)
  assert float(jnp.max(sanitizer.per_example_norms(raw))) > 2 * c


def test_user_upload_noise_std_is_sigma_sqrt_b_c(disc_state):
  c, sigma = 1.0 / B, 0.7
  args = _user_inputs(50)
  run = lambda s: federated.user_round(disc_state, *args, jnp.ones(10), jax.random.key(3),  # noqa: E731
                                       clip_norm=c, noise_multiplier=s, **KW)[1]
  noise = np.asarray(run(sigma)) - np.asarray(run(0.0))  # Same key: same critic steps.
  expected = sigma * math.sqrt(B) * c
  assert abs(noise.std() / expected - 1) < 5 / math.sqrt(2 * noise.size)


@pytest.fixture(scope="module")
def gen_state():
  return steps.init_net(jax.random.key(1), GEN, TX)


def _fedavg_update(g, d, num_records, local_steps, scale, clip, sigma, key=4, tx_d=TX):
  rng = np.random.default_rng(local_steps)
  records = rng.uniform(0, 1, (num_records, 28, 28, 1)).astype(np.float32) * scale
  labels = rng.integers(0, 10, num_records)
  idx = np.stack([federated.user_batches(np.arange(num_records), 1, B, rng)
                  for _ in range(local_steps)])  # [local_steps, 1 critic step, B]
  return federated.fedavg_user(
      g, d, jnp.asarray(records[idx]), jnp.asarray(labels[idx]), jax.random.key(key),
      gen=GEN, disc=DISC, tx=TX, tx_d=tx_d, clip_norm=clip, noise_multiplier=sigma,
      gp_weight=10.0, drift=1e-3)[0]


@pytest.mark.parametrize("num_records,local_steps,scale", [(1, 1, 1.0), (400, 3, 1.0),
                                                            (400, 3, 1e4)])
def test_fedavg_update_bound_does_not_depend_on_the_users_records(
    gen_state, disc_state, num_records, local_steps, scale):
  """The baseline's user-level bound: the joint (generator + discriminator)
  update is clipped to S whatever the user's records and local steps."""
  clip = 1e-4  # Below the raw update's norm (one Adam step moves each weight ~1e-4).
  update = _fedavg_update(gen_state, disc_state, num_records, local_steps, scale, clip, 0.0)
  assert set(update) == {"g", "d"}
  assert float(sanitizer.tree_norm(update)) <= clip * (1 + 1e-5)
  raw = _fedavg_update(gen_state, disc_state, num_records, local_steps, scale, 1e9, 0.0)
  assert float(sanitizer.tree_norm(raw)) > 2 * clip  # The clip was active.


def test_fedavg_update_noise_std_is_sigma_s(gen_state, disc_state):
  clip, sigma = 0.1, 0.5
  noisy = _fedavg_update(gen_state, disc_state, 50, 1, 1.0, clip, sigma)
  clean = _fedavg_update(gen_state, disc_state, 50, 1, 1.0, clip, 0.0)  # Same local steps.
  noise = np.concatenate([np.ravel(np.asarray(a) - np.asarray(b)) for a, b in
                          zip(jax.tree.leaves(noisy), jax.tree.leaves(clean))])
  assert abs(noise.mean()) < 5 * sigma * clip / math.sqrt(noise.size)
  assert abs(noise.std() / (sigma * clip) - 1) < 5 / math.sqrt(2 * noise.size)


def test_critic_learning_rate_moves_only_the_critics(gen_state, disc_state):
  """`critic_learning_rate` reaches the critics of both methods and nothing
  else: a frozen critic (rate 0) leaves a GS-WGAN user's discriminator and the
  baseline's discriminator update at exactly zero while the baseline's
  generator still moves; a doubled rate moves a user's critic further."""
  args = _user_inputs(50)
  kw = dict(KW, clip_norm=1.0 / B, noise_multiplier=0.0)
  step = lambda tx: federated.user_round(disc_state, *args, jnp.ones(10),  # noqa: E731
                                         jax.random.key(3), **dict(kw, tx=tx))[0]
  moved = lambda d: float(sanitizer.tree_norm(  # noqa: E731
      jax.tree.map(jnp.subtract, d.params, disc_state.params)))
  assert moved(step(steps.make_optimizer(0.0))) == 0.0
  assert moved(step(steps.make_optimizer(2e-4))) > 1.5 * moved(step(TX))

  frozen = _fedavg_update(gen_state, disc_state, 50, 2, 1.0, 1e9, 0.0,
                          tx_d=steps.make_optimizer(0.0))
  assert float(sanitizer.tree_norm(frozen["d"])) == 0.0
  assert float(sanitizer.tree_norm(frozen["g"])) > 0.0


def test_critic_learning_rate_config():
  """Each method reads its own critic rate; 0 falls back to the generators'."""
  rate = federated.critic_learning_rate
  assert rate(_config()) == rate(_config(), "fedavg_gan") == 1e-4
  c = _config(critic_learning_rate=3e-4, **{"fedavg.critic_learning_rate": 5e-5})
  assert rate(c) == 3e-4 and rate(c, "fedavg_gan") == 5e-5
  assert rate(_config(critic_learning_rate=3e-4), "fedavg_gan") == 1e-4
  with pytest.raises(ValueError, match="critic_learning_rate=-0.1"):
    rate(_config(critic_learning_rate=-0.1))
  with pytest.raises(ValueError, match="fedavg.critic_learning_rate=-0.1"):
    rate(_config(**{"fedavg.critic_learning_rate": -0.1}), "fedavg_gan")


def test_samples_of_labels_the_user_lacks_carry_no_signal(disc_state):
  real_x, real_y, fake_x, fake_y = _user_inputs(50)
  mask = (jnp.arange(10) < 5).astype(jnp.float32)
  _, up, _ = federated.user_round(disc_state, real_x, real_y, fake_x, fake_y, mask,
                                  jax.random.key(2), clip_norm=1.0 / B, noise_multiplier=0.0,
                                  **KW)
  lacking = np.asarray(fake_y) >= 5
  assert lacking.any() and (~lacking).any()
  assert np.all(np.asarray(up)[lacking] == 0)
  assert np.all(np.asarray(sanitizer.per_example_norms(up))[~lacking] > 0)


def test_label_weights_held_and_frequency():
  iid = np.repeat(np.arange(10), 30)
  skewed = np.concatenate([np.zeros(90, int), np.ones(90, int), np.full(18, 2), [3, 3]])
  np.testing.assert_array_equal(federated.label_weights(iid, "held"), np.ones(10))
  np.testing.assert_array_equal(federated.label_weights(iid, "frequency"), np.ones(10))
  held = federated.label_weights(skewed, "held")
  np.testing.assert_array_equal(held, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
  freq = federated.label_weights(skewed, "frequency")
  np.testing.assert_allclose(freq, [1, 1, 10 * 18 / 200, 10 * 2 / 200, 0, 0, 0, 0, 0, 0],
                             rtol=1e-6)
  imp = federated.label_weights(skewed, "importance")
  np.testing.assert_allclose(imp, [4.5, 4.5, 0.9, 0.1, 0, 0, 0, 0, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(federated.label_weights(iid, "importance"), np.ones(10))
  with pytest.raises(ValueError, match="label_weighting"):
    federated.label_weights(iid, "share")


class _LabelOnlyCritic(nn.Module):
  """A critic that scores by the label alone: D(x, y) = a_y."""

  @nn.compact
  def __call__(self, x, y, update_stats=False):
    del update_stats
    a = self.param("a", lambda k: jax.random.normal(k, (10,)))
    return a[y] + 0.0 * jnp.sum(x, axis=(1, 2, 3))


def test_importance_weights_leave_no_label_only_signal():
  """A skewed user's critic receives uniform labels; with "importance"
  weights its Wasserstein estimate is 0 for a critic that looks only at the
  label (it cannot tell real from fake by the label), with "held" it is not."""
  critic = _LabelOnlyCritic()
  user_y = np.concatenate([np.zeros(90, int), np.ones(90, int), np.full(18, 2), [3, 3]])
  real_y = jnp.asarray(user_y, jnp.int32)            # The user's label distribution.
  fake_y = jnp.asarray(np.repeat(np.arange(10), 20), jnp.int32)  # Uniform, as sent.
  x = jnp.zeros((200, 28, 28, 1))
  params = critic.init(jax.random.key(0), x, real_y)["params"]
  wdist = {}
  for mode in ("held", "importance"):
    w = jnp.asarray(federated.label_weights(user_y, mode))[fake_y]
    _, (_, m) = steps.critic_loss(params, {}, x, real_y, x, jax.random.key(1), disc=critic,
                                  fake_y=fake_y, fake_w=w)
    wdist[mode] = float(m["wasserstein"])
  assert abs(wdist["importance"]) < 1e-5
  assert abs(wdist["held"]) > 0.1


def test_upload_bound_holds_with_importance_weights_above_one(disc_state):
  real_x, real_y, fake_x, fake_y = _user_inputs(40)
  weights = jnp.full((10,), 4.5)
  _, up, _ = federated.user_round(disc_state, real_x, real_y, fake_x, fake_y, weights,
                                  jax.random.key(2), clip_norm=1.0 / B, noise_multiplier=0.0,
                                  **KW)
  assert np.all(np.asarray(sanitizer.per_example_norms(up)) <= 1.0 / B * (1 + 1e-5))


def test_sample_gradients_equal_the_vmap_reference(disc_state):
  _, _, fake_x, fake_y = _user_inputs(10)
  w = jnp.asarray([1.0, 0.0] * (B // 2))
  got = federated.sample_gradients(disc_state.params, disc_state.model_state, fake_x, fake_y,
                                   w, disc=DISC)

  def one(x, y, wi):
    return -wi * steps.apply_net(DISC, disc_state.params, disc_state.model_state,
                                 x[None], y[None])[0] / B

  ref = jax.vmap(jax.grad(one))(fake_x, fake_y, w)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-7)


def test_server_update_backpropagates_exactly_the_aggregated_uploads():
  g = steps.init_net(jax.random.key(4), GEN, TX)
  key = jax.random.key(5)
  labels = jnp.asarray(np.random.default_rng(0).integers(0, 10, (3, B)), jnp.int32)
  sent = federated.server_generate(GEN, g.params, g.model_state, key, labels)
  uploads = jax.random.normal(jax.random.key(6), sent.shape) * 1e-3
  g_new, ema, _ = federated.server_update(g, g.params, key, labels, uploads, 2.5, gen=GEN,
                                          tx=TX, ema_decay=0.999)
  # The recomputed forward pass is the one whose samples were sent.
  fwd = lambda p: steps.generate(GEN, p, g.model_state, key, labels.reshape(-1))  # noqa: E731
  out, vjp = jax.vjp(fwd, g.params)
  np.testing.assert_allclose(out.reshape(sent.shape), sent, rtol=1e-6)
  (grads,) = vjp(uploads.reshape(out.shape) / 2.5)
  want = g.apply_gradients(TX, grads)
  for a, b in zip(jax.tree.leaves(g_new.params), jax.tree.leaves(want.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


def test_compact_wire_rounds_each_upload_last(gen_state, disc_state):
  """bfloat16 uploads are the float32 ones (same key: same critic steps,
  clip and noise) rounded on the user's device: post-processing of the
  sanitized upload, so its bound and noise scale are those tested above."""
  args = _user_inputs(50)
  run = lambda dt: federated.user_round(  # noqa: E731
      disc_state, *args, jnp.ones(10), jax.random.key(3), clip_norm=1.0 / B,
      noise_multiplier=0.3, upload_dtype=dt, **KW)[1]
  up32, up16 = run(jnp.float32), run(jnp.bfloat16)
  assert up16.dtype == jnp.bfloat16 and up16.nbytes * 2 == up32.nbytes
  np.testing.assert_array_equal(np.asarray(up16), np.asarray(up32.astype(jnp.bfloat16)))
  assert float(jnp.max(jnp.abs(up16.astype(jnp.float32) - up32))) > 0  # It did round.

  real_x, real_y = args[0][None, :1], args[1][None, :1]  # 1 local step of 1 critic step.
  fa = lambda dt: federated.fedavg_user(  # noqa: E731
      gen_state, disc_state, real_x, real_y, jax.random.key(4), gen=GEN, disc=DISC, tx=TX,
      tx_d=TX, clip_norm=0.1, noise_multiplier=0.01, gp_weight=10.0, drift=1e-3, upload_dtype=dt)[0]
  u32, u16 = fa(jnp.float32), fa(jnp.bfloat16)
  for a, b in zip(jax.tree.leaves(u32), jax.tree.leaves(u16)):
    assert b.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(b), np.asarray(a.astype(jnp.bfloat16)))


def test_images_and_weights_on_the_wire():
  x = np.random.default_rng(0).uniform(-0.1, 1.1, (4, 28, 28, 1)).astype(np.float32)
  assert federated.images_to_wire(x, "float32").dtype == np.float32
  np.testing.assert_array_equal(federated.images_to_wire(x, "float32"), x)
  q = federated.images_to_wire(x, "compact")
  assert q.dtype == np.uint8 and q.nbytes * 4 == x.nbytes
  back = federated.images_from_wire(q)
  assert back.dtype == np.float32
  # Within half a grey level of the sample clipped to the image range.
  assert np.abs(back - np.clip(x, 0, 1)).max() <= 0.5 / 255 + 1e-7
  assert back.min() == 0 and back.max() == 1
  g = steps.init_net(jax.random.key(0), GEN, TX)
  tree = jax.device_get((g.params, g.model_state))
  sent = federated.tree_to_wire(tree, "compact")
  assert federated.nbytes(sent) * 2 == federated.nbytes(tree)
  got = federated.tree_from_wire(sent, tree)
  for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(got)):
    assert b.dtype == a.dtype
    np.testing.assert_allclose(b, a, rtol=2 ** -8, atol=0)
  with pytest.raises(ValueError, match="wire='int4'.*compact"):
    federated.images_to_wire(x, "int4")


def _config(arg="smoke", **kw):
  c = fed_config.get_config(arg)
  with c.unlocked():
    for k, v in kw.items():
      if "." in k:
        a, b = k.split(".")
        c[a][b] = v
      else:
        c[k] = v
  return c


def _param_bytes(tree):
  return sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree))


def test_payloads_and_results_of_both_methods(tmp_path, monkeypatch):
  require_prepared("mnist")
  clf = train_quick_classifier(str(tmp_path / "clf"))
  c = _config("smoke,non_iid,fixed", eval_suite="fast", eval_classifier=clf,
              num_gen_samples=256, evaluate=True,  # The suite's CNN needs a batch of 128.
              critic_learning_rate=3e-4)
  from jaxtiny.eval import scores as scores_lib
  real_quality, calls = scores_lib.sample_quality, []

  def counted(*args, **kw):
    calls.append(1)
    return real_quality(*args, **kw)

  monkeypatch.setattr(scores_lib, "sample_quality", counted)
  res = federated.train_and_evaluate(c, str(tmp_path))
  real_test = data.load("mnist", "test")[0].astype(np.float32)
  assert len(calls) == 2  # IS / FID once per method, by the suite, not again.
  assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(res))
  assert (tmp_path / "curves.png").exists()  # Both methods' training curves.
  assert res["partition"] == "non_iid" and res["users"] == 6 and res["rounds"] == 4
  assert res["generator_output"] == "sigmoid"
  assert res["n_critic"] == c.n_critic and res["seed"] == c.seed
  gs, fa = res["gswgan"], res["fedavg_gan"]
  assert gs["critic_learning_rate"] == 3e-4 and fa["critic_learning_rate"] == 1e-4
  # GS-WGAN: B float32 samples (+ B uint8 labels) down, B float32 gradients up.
  assert gs["upload_bytes_per_user_per_round"] == B * 784 * 4
  assert gs["download_bytes_per_user_per_round"] == B * 784 * 4 + B
  # FedAvg-GAN: both networks' weights (+ spectral-norm vectors) down, both updates up.
  g = steps.init_net(jax.random.key(0), GEN, TX)
  d = steps.init_net(jax.random.key(0), DISC, TX)
  weights = _param_bytes(g.params) + _param_bytes(d.params)
  assert fa["upload_bytes_per_user_per_round"] == weights
  assert fa["download_bytes_per_user_per_round"] == weights + _param_bytes(
      (g.model_state, d.model_state))
  assert res["payload_ratio_fedavg_over_gswgan"] > 100
  # Fixed-count sampling: replace-one accounting at 2 of 6 users per round.
  s = user_level.UserDpSettings(0.5, 6, "fixed", users_per_round=2, delta=1e-5)
  assert gs["epsilon"] == pytest.approx(user_level.compute_epsilon(s, 4))
  assert gs["max_participations"] <= 4
  for m in ("gswgan", "fedavg_gan"):
    for name in ("gen_data.npz", "generator.npz", "privacy.json", "metrics.jsonl",
                 "samples_000002.png", "samples_final.png", "curves.png"):
      assert (tmp_path / m / name).exists(), (m, name)
    with np.load(tmp_path / m / "gen_data.npz") as f:
      assert f["x"].shape == (256, 28, 28, 1) and 0 <= f["x"].min() <= f["x"].max() <= 1
  with np.load(tmp_path / "gswgan" / "generator.npz") as f:
    assert not any("Embed" in k or "opt_state" in k for k in f.files)
  # The evaluation suite ran on each method's own samples (quick-look protocol).
  for m in ("gswgan", "fedavg_gan"):
    ev = res[m]["eval_suite"]
    record = json.loads((tmp_path / m / "eval" / "eval.json").read_text())
    assert record["source"] == str(tmp_path / m / "gen_data.npz")
    assert record["n_samples"] == 256 and ev["fast"] is True
    assert record["epsilon"] == res[m]["epsilon"] and record["accountant"] == "user_level"
    assert record["run"]["users"] == 6 and record["run"]["generator"] == "dcgan"
    for k in ("mlp_acc", "cnn_acc", "avg_acc"):
      assert 0.0 <= ev[k] <= 1.0 and ev[k] == record[k]
    assert ev["calibrated_acc"] == pytest.approx(record["avg_acc"] / record["real_avg_acc"])
    for k in ("is_mean", "fid_lenet", "label_acc", "fid_samples"):
      assert res[m]["scores"][k] == record[k], k
    for k in ("label_acc_per_class", "label_misread"):
      assert ev[k] == record[k] and len(ev[k]) == 10, k
    assert ev["intra_class_l2"] == record["intra_class_l2"] > 0
    assert ev["real_intra_class_l2"] == record["real_intra_class_l2"] > 0
    # The background on the real test set's blank pixels, from the released samples.
    with np.load(tmp_path / m / "gen_data.npz") as f:
      want = metrics.background_stats(f["x"], f["y"], real_test / 255.0)
    assert ev["background"] == pytest.approx(want)
    assert 0 < ev["background"]["background_pixels"] < 784
    assert ev["background"]["real_exact_zero"] > 0.5  # MNIST: most pixels exactly black.


def test_curve_panels_smooth_the_critic_estimate_and_keep_the_ledgers_epsilon(tmp_path):
  rows = {"gswgan": [{"step": 10, "users": 2, "wasserstein": 4.0},
                     {"step": 20, "users": 0},  # No users: no estimate, not a zero.
                     {"step": 30, "users": 1, "wasserstein": 2.0},
                     {"step": 40, "users": 3, "wasserstein": 9.0},
                     {"step": 40, "epsilon": 12.5}],
          "fedavg_gan": [{"step": 40, "epsilon": 3e6}]}
  panels = federated.curve_panels(rows, window=2)
  (w_name, wdist), (e_name, eps) = panels.items()
  assert "Wasserstein" in w_name and "epsilon" in e_name
  assert list(wdist) == ["gswgan"]  # The baseline logged no estimate here.
  np.testing.assert_allclose(wdist["gswgan"][0], [10, 30, 40])
  np.testing.assert_allclose(wdist["gswgan"][1], [4.0, 3.0, 5.5])  # Trailing means of <= 2.
  np.testing.assert_allclose(eps["gswgan"], [[40], [12.5]])
  np.testing.assert_allclose(eps["fedavg_gan"], [[40], [3e6]])
  # The figure: written for the methods that have metrics, skipped when none has.
  (tmp_path / "gswgan").mkdir()
  with open(tmp_path / "gswgan" / "metrics.jsonl", "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in rows["gswgan"]))
  federated.save_curves(str(tmp_path / "a.png"), {m: str(tmp_path / m) for m in rows})
  assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  federated.save_curves(str(tmp_path / "b.png"), {"fedavg_gan": str(tmp_path / "none")})
  assert not (tmp_path / "b.png").exists()


def test_compact_wire_payloads_of_both_methods(tmp_path):
  require_prepared("mnist")
  res = federated.train_and_evaluate(_config(wire="compact", rounds=2), str(tmp_path))
  assert res["wire"] == "compact"
  gs, fa = res["gswgan"], res["fedavg_gan"]
  # GS-WGAN: B uint8 samples + B uint8 labels down, B bfloat16 gradients up.
  assert gs["upload_bytes_per_user_per_round"] == B * 784 * 2
  assert gs["download_bytes_per_user_per_round"] == B * 784 + B
  # FedAvg-GAN: every float (weights, spectral-norm vectors, updates) in bfloat16.
  g = steps.init_net(jax.random.key(0), GEN, TX)
  d = steps.init_net(jax.random.key(0), DISC, TX)
  weights = _param_bytes(g.params) + _param_bytes(d.params)
  assert fa["upload_bytes_per_user_per_round"] == weights // 2
  assert fa["download_bytes_per_user_per_round"] == (
      weights + _param_bytes((g.model_state, d.model_state))) // 2
  with np.load(tmp_path / "gswgan" / "gen_data.npz") as f:
    assert np.isfinite(f["x"]).all()
  with pytest.raises(ValueError, match="wire='fp8'"):
    federated.train_and_evaluate(_config(wire="fp8"), str(tmp_path / "bad"))
  assert not (tmp_path / "bad").exists()


def test_a_run_that_cannot_be_scored_says_so_before_training(tmp_path):
  c = _config(data_dir=str(tmp_path), evaluate=True, eval_suite="")
  msg = federated.unscorable_warning(c)
  want = tmp_path / "classifiers" / "mnist.npz"
  assert str(want) in msg and "experiments.classifier" in msg and "classifier.py:mnist" in msg
  want.parent.mkdir()
  want.write_bytes(b"present")  # Only its presence is checked before training.
  assert federated.unscorable_warning(c) is None
  missing = str(tmp_path / "elsewhere.npz")
  assert missing in federated.unscorable_warning(_config(
      data_dir=str(tmp_path), evaluate=False, eval_suite="fast", eval_classifier=missing))
  assert federated.unscorable_warning(_config(evaluate=False, eval_suite="")) is None


def test_smoke_run_resumes_both_methods_exactly(tmp_path, monkeypatch):
  require_prepared("mnist")
  c = _config()
  full = federated.train_and_evaluate(c, str(tmp_path / "full"))
  real_save = checkpoint.save
  calls = {"n": 0, "crash_at": 0}

  def crashing_save(directory, step, tree, **kw):
    real_save(directory, step, tree, **kw)
    calls["n"] += 1
    if calls["n"] == calls["crash_at"]:
      raise KeyboardInterrupt(f"simulated kill after checkpoint {step} in {directory}")

  monkeypatch.setattr(checkpoint, "save", crashing_save)
  # Killed after GS-WGAN's round-2 checkpoint; then after FedAvg-GAN's (the
  # resumed run's second checkpoint: GS-WGAN round 4, FedAvg-GAN round 2).
  for crash_at in (1, 2):
    calls.update(n=0, crash_at=crash_at)
    with pytest.raises(KeyboardInterrupt):
      federated.train_and_evaluate(c, str(tmp_path / "resumed"))
  calls.update(n=0, crash_at=0)
  # Other privacy settings on resume (here the sampling rate) are refused:
  # the ledger would account the whole run at the new rate.
  with pytest.raises(accounting.LedgerMismatchError,
                     match=r"round 4 .*sampling_probability: 0.5 in the ledger, 0.25 now"):
    federated.train_and_evaluate(_config(sampling_rate=0.25), str(tmp_path / "resumed"))
  resumed = federated.train_and_evaluate(c, str(tmp_path / "resumed"))
  for m in ("gswgan", "fedavg_gan"):
    with np.load(tmp_path / "full" / m / "gen_data.npz") as a, \
         np.load(tmp_path / "resumed" / m / "gen_data.npz") as b:
      np.testing.assert_array_equal(a["x"], b["x"])
    assert (json.loads((tmp_path / "full" / m / "privacy.json").read_text())
            == json.loads((tmp_path / "resumed" / m / "privacy.json").read_text()))
    assert resumed[m]["epsilon"] == full[m]["epsilon"]
  # A finished run extends: the same command with more rounds continues from
  # its last checkpoint and ends where a run planned that long from the start
  # does (nothing in a round depends on the planned total).
  short = federated.train_and_evaluate(_config(rounds=2), str(tmp_path / "extended"))
  assert short["rounds"] == 2 and short["gswgan"]["epsilon"] < full["gswgan"]["epsilon"]
  extended = federated.train_and_evaluate(c, str(tmp_path / "extended"))
  assert extended["rounds"] == 4
  for m in ("gswgan", "fedavg_gan"):
    with np.load(tmp_path / "full" / m / "gen_data.npz") as a, \
         np.load(tmp_path / "extended" / m / "gen_data.npz") as b:
      np.testing.assert_array_equal(a["x"], b["x"])
    assert extended[m]["epsilon"] == full[m]["epsilon"]
    assert extended[m]["max_participations"] == full[m]["max_participations"]
  # Shortening is refused before anything is rewritten: the round-4 generators
  # would be released with the privacy of 2 rounds.
  config_json = (tmp_path / "extended" / "config.json").read_text()
  with pytest.raises(accounting.LedgerMismatchError,
                     match=r"gswgan .* checkpoint at round 4, past the 2 rounds.*rounds=4"):
    federated.train_and_evaluate(_config(rounds=2), str(tmp_path / "extended"))
  assert (tmp_path / "extended" / "config.json").read_text() == config_json
  # So is a changed critic rate (the cpu variant's default changed in session
  # 41: the same command would otherwise switch a run's critics mid-way).
  with pytest.raises(ValueError, match=r"gswgan .*rate 0.0001 and this config sets "
                     r"0.0003\. Pass --config.critic_learning_rate=0.0001"):
    federated.train_and_evaluate(_config(critic_learning_rate=3e-4), str(tmp_path / "extended"))
  with pytest.raises(ValueError, match=r"fedavg_gan .*--config.fedavg.critic_learning_rate=0.0001"):
    federated.train_and_evaluate(_config(**{"fedavg.critic_learning_rate": 3e-4}),
                                 str(tmp_path / "extended"))
  assert (tmp_path / "extended" / "config.json").read_text() == config_json
  again = federated.train_and_evaluate(_config(critic_learning_rate=1e-4),  # The same rate.
                                       str(tmp_path / "extended"))
  assert again["rounds"] == 4 and again["gswgan"]["critic_learning_rate"] == 1e-4


def test_bad_configs_fail_before_writing(tmp_path):
  with pytest.raises(ValueError, match="methods"):
    federated.train_and_evaluate(_config(methods=("gswgan", "dpgan")), str(tmp_path / "a"))
  with pytest.raises(user_level.PrivacyBudgetError, match="cannot be met"):
    federated.train_and_evaluate(_config(**{"dp.target_epsilon": 1e-4}), str(tmp_path / "b"))
  assert not (tmp_path / "b" / "config.json").exists()
  with pytest.raises(ValueError, match="eval_suite"):
    federated.train_and_evaluate(_config(eval_suite="paper"), str(tmp_path / "c"))
  with pytest.raises(ValueError, match="label_weighting"):
    federated.train_and_evaluate(_config(label_weighting="share"), str(tmp_path / "c"))
  with pytest.raises(ValueError, match="critic_learning_rate"):
    federated.train_and_evaluate(_config(critic_learning_rate=-1e-4), str(tmp_path / "c"))
  with pytest.raises(ValueError, match="fedavg.critic_learning_rate"):
    federated.train_and_evaluate(_config(**{"fedavg.critic_learning_rate": -1e-4}),
                                 str(tmp_path / "c"))
  with pytest.raises(ValueError, match="generator_output='tanh'"):
    federated.train_and_evaluate(_config(generator_output="tanh"), str(tmp_path / "c"))
  with pytest.raises(ValueError, match="num_gen_samples=100"):
    federated.train_and_evaluate(_config(eval_suite="fast"), str(tmp_path / "c"))
  assert not (tmp_path / "c").exists()
  with pytest.raises(ValueError, match="unknown option"):
    fed_config.get_config("smoke,mixed")
  with pytest.raises(ValueError, match="partition="):
    federated.load_users(_config(partition="dirichlet"))


def test_vmapped_users_match_sequential_users(disc_state):
  """The accelerator path (users stacked under vmap) computes what the CPU
  path (one call per user) does."""
  import functools  # pylint: disable=g-import-not-at-top
  fn = functools.partial(federated.user_round, clip_norm=1.0 / B, noise_multiplier=0.3, **KW)
  d2 = steps.init_net(jax.random.key(9), DISC, TX)
  arg_list = [(jax.device_get(d), *_user_inputs(20 + i, seed=i), jnp.ones(10),
               jax.random.key(10 + i)) for i, d in enumerate((disc_state, d2))]
  seq = federated._map_users("sequential", fn)(arg_list)  # pylint: disable=protected-access
  vec = federated._map_users("vmap", fn)(arg_list)  # pylint: disable=protected-access
  for a, b in zip(jax.tree.leaves(seq), jax.tree.leaves(vec)):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=2e-3, atol=2e-5)
  with pytest.raises(ValueError, match="user_mode"):
    federated._map_users("threads", fn)  # pylint: disable=protected-access


@pytest.mark.parametrize("arg", ["emnist", "cpu", "cpu,non_iid", "smoke,fixed", "cpu,iid"])
def test_variants_are_locked_data(arg):
  c = fed_config.get_config(arg)
  with pytest.raises(AttributeError):
    c.new_field = 1
  assert set(c.methods) == set(federated.METHODS)
  if arg == "emnist":  # The paper's setting: real writers, ResNet generator, vmapped users.
    assert (c.dataset, c.generator, c.user_mode, c.dp.noise_multiplier) == (
        "fed_emnist", "resnet", "vmap", 1.07)
  assert c.partition == ("non_iid" if "non_iid" in arg else "iid")
  if arg.startswith("cpu"):  # The rates the config's docstring states, on both partitions.
    assert (federated.critic_learning_rate(c, "gswgan"),
            federated.critic_learning_rate(c, "fedavg_gan")) == (3e-4, 1e-4)
    assert (c.dp.noise_multiplier, c.fedavg.noise_multiplier, c.n_critic) == (0.03, 0.01, 5)


@pytest.mark.parametrize("arg,users,want_gs,want_fedavg", [
    ("cpu", 20, 5.86e5, 5.47e6),     # The epsilons the config's docstring states.
    ("emnist", 3383, 14.1, 9.99e6),  # The baseline at the paper's reported epsilon.
])
def test_variant_noise_gives_the_documented_epsilons(arg, users, want_gs, want_fedavg):
  c = fed_config.get_config(arg)
  for sigma, want in ((c.dp.noise_multiplier, want_gs), (c.fedavg.noise_multiplier, want_fedavg)):
    s = user_level.UserDpSettings(sigma, users, "poisson", c.sampling_rate, delta=c.dp.delta)
    assert user_level.compute_epsilon(s, c.rounds) == pytest.approx(want, rel=0.01)


def test_federated_emnist_writers_train_end_to_end_with_vmapped_users(tmp_path):
  # The `emnist` variant's path on a small TFF-layout file the test writes: one
  # user per writer, users vmapped in chunks (the accelerator code path).
  import h5py  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  (tmp_path / "fed_emnist").mkdir()
  sizes = (12, 3, 20, 7, 9, 15)
  with h5py.File(tmp_path / "fed_emnist" / "fed_emnist_digitsonly_train.h5", "w") as f:
    ex = f.create_group("examples")
    for i, n in enumerate(sizes):
      g = ex.create_group(f"f{i:04d}_00")
      ink = np.zeros((n, 28, 28), np.float32)
      ink[:, 6:22, 10:18] = rng.uniform(0.2, 1.0, (n, 16, 8))
      g.create_dataset("pixels", data=1.0 - ink)  # TFF: dark ink on white.
      g.create_dataset("label", data=rng.integers(0, 10, n).astype(np.int32))
  c = _config("emnist", data_dir=str(tmp_path), user_mode="vmap", user_chunk=2,
              generator="dcgan", sampling_rate=0.5, rounds=2, batch_size=4, n_critic=1,
              user_warmup_iterations=1, checkpoint_every_rounds=1, sample_every_rounds=1,
              log_every_rounds=1, num_gen_samples=20, evaluate=False, eval_suite="",
              bank_cache_mb=64)
  res = federated.train_and_evaluate(c, str(tmp_path / "run"))
  assert res["partition"] == "fed_emnist" and res["users"] == len(sizes)
  part = json.loads((tmp_path / "run" / "results.json").read_text())["partition_stats"]
  assert part["records"] == sum(sizes) and part["size_min"] == 3
  for m in ("gswgan", "fedavg_gan"):
    assert math.isfinite(res[m]["epsilon"]) and res[m]["epsilon"] > 0
    with np.load(tmp_path / "run" / m / "gen_data.npz") as g:
      assert g["x"].shape == (20, 28, 28, 1) and np.isfinite(g["x"]).all()
  assert res["gswgan"]["upload_bytes_per_user_per_round"] == 4 * 784 * 4


def test_missing_federated_emnist_says_where_to_put_it(tmp_path):
  c = _config("emnist", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="fed_emnist_digitsonly_train.h5"):
    federated.load_users(c)
