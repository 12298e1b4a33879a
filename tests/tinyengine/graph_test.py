"""Float network -> int8 graph -> integer interpreter."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtiny.tinyengine import graph
from jaxtiny.tinyengine import quant
from jaxtiny.tinynas import model
from jaxtiny.tinynas import pipeline
from jaxtiny.tinynas import space as space_lib


@pytest.fixture(scope="module")
def net():
  sp = space_lib.SearchSpace(0.3, 32)
  arch = space_lib.to_arch(sp, space_lib.sample(sp, np.random.default_rng(0)))
  params, state = model.init(arch, jax.random.key(0))
  params["classifier"]["w"] = params["classifier"]["w"] * 100
  x = np.asarray(jax.random.normal(jax.random.key(1), (300, 32, 32, 1)))
  step = jax.jit(lambda s, xb: model.apply(arch, params, s, xb, True)[1])
  for _ in range(3):                  # Non-trivial BN statistics.
    state = step(state, jnp.asarray(x[:100]))
  return arch, params, state, x


@pytest.fixture(scope="module")
def qgraph(net):
  arch, params, state, x = net
  ops = graph.fold(arch, params, state)
  return graph.quantize(ops, graph.calibrate(ops, x[:128]), (32, 32, 1))


def test_folded_float_graph_equals_the_network(net):
  arch, params, state, x = net
  ops = graph.fold(arch, params, state)
  want = np.asarray(jax.jit(lambda xb: model.apply(arch, params, state, xb,
                                                   False)[0])(x[:50]))
  got = np.asarray(jax.jit(lambda xb: graph.float_forward(ops, xb)["logits"])(
      x[:50]))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  kinds = [op.kind for op in ops]
  assert kinds.count(graph.ADD) == sum(b.shortcut for b in arch.blocks)
  assert kinds[-2:] == [graph.AVGPOOL, graph.FC]


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_int8_graph_tracks_the_float_network(net, method):
  arch, params, state, x = net
  ops = graph.fold(arch, params, state)
  qp = graph.calibrate(ops, x[:200], method=method)
  g = graph.quantize(ops, qp, (32, 32, 1))
  for op in g.ops:
    if "w" in op.args:
      assert op.args["w"].dtype == np.int8 and op.args["bias"].dtype == np.int32
      assert np.abs(op.args["w"]).max() <= 127
  logits_q = graph.run(g, graph.quantize_input(g, x[200:]))
  assert logits_q.dtype == np.int8
  got = graph.dequantize_logits(g, logits_q)
  want = np.asarray(jax.jit(lambda xb: graph.float_forward(ops, xb)["logits"])(
      x[200:]))
  scale = np.abs(want).max()
  assert np.abs(got - want).max() < 0.15 * scale
  assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_mobilenet_v2_with_feature_mix_quantizes(net):
  _, _, _, x = net
  arch = pipeline.mobilenet_v2(0.15, 32)
  params, state = model.init(arch, jax.random.key(2))
  ops = graph.fold(arch, params, state)
  assert any(op.output == "mix" for op in ops)
  g = graph.quantize(ops, graph.calibrate(ops, x[:64]), (32, 32, 1))
  assert graph.run(g, graph.quantize_input(g, x[:8])).shape == (8, 10)


def test_bad_input_is_rejected_before_running(net, qgraph):
  arch, params, state, x = net
  ops = graph.fold(arch, params, state)
  g = qgraph
  with pytest.raises(ValueError, match=r"input must be int8 \[N, 32, 32, 1\]"):
    graph.run(g, np.zeros((2, 28, 28, 1), np.int8))
  with pytest.raises(ValueError, match="calibration method"):
    graph.calibrate(ops, x[:8], method="kl")
  with pytest.raises(quant.QuantError):
    quant.quantize_multiplier(float("nan"))


@pytest.mark.parametrize("variant", ["plain", "optimised", "inplace"])
def test_c_kernels_run_the_whole_graph_bit_exactly(net, qgraph, variant):
  from jaxtiny.tinyengine import ckernels
  if not ckernels.available() and not os.environ.get("CI"):
    pytest.skip("C kernels not built; run `make ckernels`")
  _, _, _, x = net
  g = qgraph
  xq = graph.quantize_input(g, x[128:160])
  want = graph.run(g, xq, keep=True)
  got = graph.run(g, xq, kernels=ckernels.graph_kernels(variant), keep=True)
  assert set(got) == set(want)
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  assert (got["logits"].argmax(1) == want["logits"].argmax(1)).all()
