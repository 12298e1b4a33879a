"""Arch JSON I/O and the profiler, on the four published MCUNet configs."""

import copy
import json
import os

import pytest

from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import profile as profile_lib
from tests import helpers

# (MACs, params, peak activation bytes) published in the MCUNet model zoo.
PUBLISHED = {
    "mcunet-5fps_imagenet.json": (12.79e6, 0.636e6, 92_160),
    "mcunet-256kb-1mb_imagenet.json": (67.29e6, 0.729e6, 332_800),
    "mbv2-w0.35-r144_imagenet.json": (23.50e6, 0.750e6, 311_040),
    "proxyless-w0.25-r112_imagenet.json": (10.69e6, 0.570e6, 100_352),
}


@pytest.fixture(scope="module")
def mcunet_dir():
  return helpers.shared_mcunet_dir()


def _load_raw(mcunet_dir, name):
  with open(os.path.join(mcunet_dir, name)) as f:
    return json.load(f)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_profile_matches_published_figures(mcunet_dir, name):
  macs, params, peak = PUBLISHED[name]
  p = profile_lib.profile(arch_lib.load(os.path.join(mcunet_dir, name)))
  assert round(p["macs"] / 1e6, 2) == pytest.approx(macs / 1e6)
  assert round(p["params"] / 1e6, 3) == pytest.approx(params / 1e6)
  assert p["peak_activation_bytes"] == peak
  # In-place depthwise never needs more than the reference rule.
  assert p["peak_activation_inplace_bytes"] <= p["peak_activation_bytes"]
  # Flash: one byte per weight (BN folded away) plus 12 B per output channel.
  assert p["flash_bytes"] > p["params"] - 2 * p["params"] // 10


def test_flash_and_params_by_hand():
  # stem 1->8 k3 s2 on 8x8 -> 4x4; one block 8->8 ratio 2 (mid 16) k3 s1 with
  # shortcut; no mix; 10 classes.
  arch = arch_lib.Arch(resolution=8, in_channels=1, stem_channels=8,
                       blocks=(arch_lib.Block(8, 8, 3, 1, 2, 16, True),),
                       mix_channels=None, num_classes=10)
  p = profile_lib.profile(arch)
  weights = 9 * 1 * 8 + 8 * 16 + 16 * 9 + 16 * 8 + 8 * 10
  channels = 8 + 16 + 16 + 8 + 10
  assert p["params"] == weights + 2 * (8 + 16 + 16 + 8) + 10
  assert p["flash_bytes"] == weights + 12 * channels
  assert p["macs"] == 16 * 8 * 9 + 16 * 8 * 16 + 16 * 16 * 9 + 16 * 16 * 8 + 80
  x, e = 16 * 8, 16 * 16
  # Depthwise with shortcut: e + d + x (reference) vs max(e, d) + H*W + x.
  assert p["peak_activation_bytes"] == max(64 + 128, x + e, e + e + x,
                                           e + x, 8 + 10)
  assert p["peak_activation_inplace_bytes"] == max(64 + 128, x + e,
                                                   e + 16 + x, e + x + x)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_json_round_trip(mcunet_dir, name, tmp_path):
  arch = arch_lib.load(os.path.join(mcunet_dir, name))
  path = tmp_path / "a.json"
  arch_lib.save(arch, path)
  again = arch_lib.load(path)
  assert again == arch and hash(again) == hash(arch)
  assert profile_lib.profile(again) == profile_lib.profile(arch)
  # The written form is the published format: the original reader fields.
  d = json.loads(path.read_text())
  raw = _load_raw(mcunet_dir, name)
  assert d["first_conv"]["out_channels"] == raw["first_conv"]["out_channels"]
  kept = [b for b in raw["blocks"]
          if b["mobile_inverted_conv"]["name"] != "ZeroLayer"]
  assert len(d["blocks"]) == len(kept)
  for ours, theirs in zip(d["blocks"], kept):
    for key in ("in_channels", "out_channels", "kernel_size", "stride",
                "expand_ratio"):
      assert ours["mobile_inverted_conv"][key] == \
          theirs["mobile_inverted_conv"][key]
    assert (ours["shortcut"] is None) == (theirs["shortcut"] is None)


def test_zero_layer_blocks_are_skipped(mcunet_dir):
  raw = _load_raw(mcunet_dir, "proxyless-w0.25-r112_imagenet.json")
  n_zero = sum(b["mobile_inverted_conv"]["name"] == "ZeroLayer"
               for b in raw["blocks"])
  assert n_zero > 0
  arch = arch_lib.from_dict(raw)
  assert len(arch.blocks) == len(raw["blocks"]) - n_zero


def _mutated(raw, fn):
  d = copy.deepcopy(raw)
  fn(d)
  return d


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.pop("resolution"), "missing field 'resolution'"),
    (lambda d: d["blocks"][3]["mobile_inverted_conv"].pop("kernel_size"),
     "blocks[3].mobile_inverted_conv: missing field 'kernel_size'"),
    (lambda d: d["blocks"][4]["mobile_inverted_conv"].update(in_channels=7),
     "blocks[4]: field 'in_channels' is 7"),
    (lambda d: d["blocks"][2]["mobile_inverted_conv"].update(name="SEConv"),
     "blocks[2].mobile_inverted_conv: unknown layer name 'SEConv'"),
    (lambda d: d["blocks"][5]["mobile_inverted_conv"].update(stride=0),
     "blocks[5].mobile_inverted_conv: field 'stride' must be positive"),
    (lambda d: d["first_conv"].update(out_channels=-16),
     "first_conv: field 'out_channels' must be positive"),
    (lambda d: d["classifier"].update(in_features=99),
     "classifier: field 'in_features' is 99"),
    (lambda d: d["classifier"].update(name="Dense"),
     "classifier: unknown layer name 'Dense'"),
    (lambda d: d["blocks"][1].update(shortcut={"name": "IdentityLayer"}),
     "blocks[1]: field 'shortcut'"),
])
def test_malformed_json_names_block_and_field(mcunet_dir, mutate, needle,
                                              tmp_path):
  raw = _load_raw(mcunet_dir, "mcunet-5fps_imagenet.json")
  path = tmp_path / "bad.json"
  path.write_text(json.dumps(_mutated(raw, mutate)))
  with pytest.raises(arch_lib.ArchError) as e:
    arch_lib.load(path)
  assert needle in str(e.value)
  assert str(path) in str(e.value)


def test_profile_cli(mcunet_dir, tmp_path):
  path = os.path.join(mcunet_dir, "mcunet-5fps_imagenet.json")
  out = helpers.run_python(["-m", "jaxtiny.tinynas.profile", path, "--json"])
  got = json.loads(out.stdout)
  assert tuple(got) == profile_lib.KEYS
  assert got["peak_activation_bytes"] == 92_160
  text = helpers.run_python(["-m", "jaxtiny.tinynas.profile", path,
                             "--layers"]).stdout
  assert "blocks[0].depthwise" in text and "92,160 B (90.0 kB)" in text
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  proc = helpers.run_python(["-m", "jaxtiny.tinynas.profile", str(bad)],
                            check=False)
  assert proc.returncode == 2 and "not valid JSON" in proc.stderr
