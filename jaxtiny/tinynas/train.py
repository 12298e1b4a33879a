"""Training for TinyNAS: standalone networks, the elastic supernet, BN
recalibration and subnet scoring.

Images arrive as uint8 [N, 28, 28, 1]; each jitted step normalises them and
resizes them (bilinear) to the network's input resolution, which is a static
argument: one compiled program per resolution, never one per subnet.

Optimiser (every network, same recipe): SGD with Nesterov momentum 0.9, cosine
learning-rate decay after a linear warm-up, label smoothing, weight decay on
conv and linear weights only (not on BN parameters or kernel transforms).
Training is data-parallel over `num_devices` local devices (batch sharded on a
"data" mesh axis, parameters replicated).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtiny.tinynas import arch as arch_lib
from jaxtiny.tinynas import model
from jaxtiny.tinynas import space as space_lib
from jaxtiny.tinynas import supernet
from jaxtiny.train import distributed

Params = dict[str, Any]
# Fashion-MNIST training-set pixel statistics (x / 255).
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530
PHASES = ("full", "kernel", "depth", "expand")


@dataclasses.dataclass(frozen=True)
class Recipe:
  """Optimisation settings shared by every network trained here."""
  batch_size: int = 128
  learning_rate: float = 0.1
  warmup_steps: int = 50
  weight_decay: float = 4e-5
  label_smoothing: float = 0.1
  kd_weight: float = 1.0          # Supernet phases after "full" only.
  num_devices: int = 0


def preprocess(images: jax.Array, resolution: int) -> jax.Array:
  """uint8 [N, 28, 28, 1] -> normalised float [N, R, R, 1]."""
  x = (images.astype(jnp.float32) / 255.0 - PIXEL_MEAN) / PIXEL_STD
  if x.shape[1] != resolution:
    x = jax.image.resize(x, (x.shape[0], resolution, resolution, x.shape[3]),
                         "bilinear")
  return x


def make_optimizer(recipe: Recipe) -> optax.GradientTransformation:
  """Weight decay + Nesterov momentum; the learning rate is applied by the
  step (`apply_lr`), so a new schedule never recompiles the step."""
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
      lambda path, _: getattr(path[-1], "key", None) == "w", params)
  return optax.chain(optax.add_decayed_weights(recipe.weight_decay, decay_mask),
                     optax.trace(decay=0.9, nesterov=True))


def lr_schedule(recipe: Recipe, total_steps: int) -> Callable[[int], float]:
  """Linear warm-up then cosine decay to 0 over `total_steps` (host side)."""
  sched = optax.warmup_cosine_decay_schedule(
      0.0, recipe.learning_rate, min(recipe.warmup_steps, total_steps // 2),
      max(total_steps, 1))
  return lambda step: float(sched(step))


def apply_lr(params: Params, direction: Params, lr: jax.Array) -> Params:
  return jax.tree_util.tree_map(lambda p, u: p - lr * u, params, direction)


def _loss(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]),
                                smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


def _kd(student: jax.Array, teacher: jax.Array) -> jax.Array:
  """KL(teacher || student) of the softmax outputs, batch mean."""
  t = jax.nn.log_softmax(teacher)
  s = jax.nn.log_softmax(student)
  return jnp.sum(jnp.exp(t) * (t - s), axis=-1).mean()


class Batches:
  """Endless shuffled minibatches (numpy), one epoch permutation at a time."""

  def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int,
               rng: np.random.Generator):
    if len(x) < batch_size:
      raise ValueError(f"{len(x)} training examples is fewer than one batch "
                       f"of {batch_size}; lower batch_size.")
    self.x, self.y, self.b, self.rng = x, y, batch_size, rng
    self._order = np.empty(0, np.int64)

  def __next__(self) -> tuple[np.ndarray, np.ndarray]:
    if len(self._order) < self.b:
      self._order = self.rng.permutation(len(self.x))
    idx, self._order = self._order[:self.b], self._order[self.b:]
    return self.x[idx], self.y[idx]

  def __iter__(self) -> Iterator:
    return self


class _Placement:
  """Shards batches over a 1-D data mesh and replicates the train state."""

  def __init__(self, num_devices: int, batch_size: int):
    self.mesh = distributed.data_mesh(num_devices)
    n = self.mesh.devices.size
    if batch_size % n:
      raise ValueError(f"batch_size {batch_size} must be a multiple of the "
                       f"{n} devices it is sharded over.")
    self.repl = distributed.replicated(self.mesh)
    self.data = distributed.batch_sharded(self.mesh)

  def state(self, tree: Any) -> Any:
    return jax.device_put(tree, self.repl)

  def batch(self, x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
    return jax.device_put(x, self.data), jax.device_put(y, self.data)


# ----------------------------------------------------------- standalone

@functools.lru_cache(maxsize=None)
def _optimizer(weight_decay: float) -> optax.GradientTransformation:
  # Cached so that jitted steps taking it as a static argument stay cached.
  return make_optimizer(Recipe(weight_decay=weight_decay))


@functools.partial(jax.jit, static_argnames=("arch", "weight_decay",
                                             "smoothing"),
                   donate_argnums=(0, 1, 2))
def _arch_step(params, state, opt_state, images, labels, lr, *, arch,
               weight_decay, smoothing):
  def loss_fn(p):
    logits, new_state = model.apply(arch, p, state,
                                    preprocess(images, arch.resolution), True)
    return _loss(logits, labels, smoothing), (new_state, logits)
  (loss, (new_state, logits)), g = jax.value_and_grad(
      loss_fn, has_aux=True)(params)
  updates, opt_state = _optimizer(weight_decay).update(g, opt_state, params)
  acc = jnp.mean(jnp.argmax(logits, -1) == labels)
  return apply_lr(params, updates, lr), new_state, opt_state, {
      "loss": loss, "acc": acc}


def train_arch(arch: arch_lib.Arch, x: np.ndarray, y: np.ndarray, steps: int,
               recipe: Recipe, seed: int,
               params: Params | None = None, state: Params | None = None,
               on_step: Callable[[int, dict], None] | None = None
               ) -> tuple[Params, Params]:
  """Trains a standalone network (from scratch, or from `params`/`state`).
  The compiled step is shared by every call with the same architecture."""
  if params is None:
    params, state = model.init(arch, jax.random.key(seed))
  opt = _optimizer(recipe.weight_decay)
  lr_at = lr_schedule(recipe, steps)
  place = _Placement(recipe.num_devices, recipe.batch_size)
  params, state = place.state((params, state))
  opt_state = place.state(opt.init(params))
  batches = Batches(x, y, recipe.batch_size, np.random.default_rng(seed))
  for i in range(steps):
    params, state, opt_state, m = _arch_step(
        params, state, opt_state, *place.batch(*next(batches)),
        jnp.float32(lr_at(i)), arch=arch, weight_decay=recipe.weight_decay,
        smoothing=recipe.label_smoothing)
    if on_step is not None:
      on_step(i + 1, m)
  return params, state


@functools.partial(jax.jit, static_argnames=("arch",))
def _arch_logits(params, state, images, *, arch):
  return model.apply(arch, params, state, preprocess(images, arch.resolution),
                     False)[0]


def predict_fn(arch: arch_lib.Arch) -> Callable:
  """logits(params, state, uint8 images) of `arch` (compiled once per arch)."""
  return functools.partial(_arch_logits, arch=arch)


def accuracy(logits_fn: Callable[[np.ndarray], jax.Array], x: np.ndarray,
             y: np.ndarray, batch_size: int = 500) -> float:
  """Top-1 accuracy of `logits_fn` over (x, y) in fixed-size batches (the last
  one padded, so one compiled program serves every batch)."""
  correct = 0
  for i in range(0, len(x), batch_size):
    xb = x[i:i + batch_size]
    n = len(xb)
    if n < batch_size:
      xb = np.concatenate([xb, np.zeros((batch_size - n,) + xb.shape[1:],
                                        xb.dtype)])
    pred = np.asarray(jnp.argmax(logits_fn(xb), -1))[:n]
    correct += int((pred == y[i:i + n]).sum())
  return correct / len(x)


# ----------------------------------------------------------- supernet

def phase_sampler(space: space_lib.SearchSpace, phase: str,
                  resolutions: Sequence[int]
                  ) -> Callable[[np.random.Generator], space_lib.SubnetChoice]:
  """Subnet sampling of one progressive-shrinking phase: `full` trains only
  the largest network; `kernel` adds elastic kernels; `depth` adds elastic
  depth; `expand` makes everything elastic."""
  if phase not in PHASES:
    raise ValueError(f"unknown supernet phase {phase!r}; use {PHASES}.")
  big = space_lib.largest(space)
  res = tuple(resolutions) or (space.resolution,)

  def draw(rng: np.random.Generator) -> space_lib.SubnetChoice:
    r = int(rng.choice(res)) if phase != "full" else space.resolution
    if phase == "full":
      return dataclasses.replace(big, resolution=r)
    c = space_lib.sample(space, rng)
    depths = c.depths if phase in ("depth", "expand") else big.depths
    expands = c.expands if phase == "expand" else big.expands
    return space_lib.SubnetChoice(depths, c.kernels, expands, r)
  return draw


@dataclasses.dataclass
class SupernetTrainer:
  """Progressive shrinking with distillation from the full network.

  `train_phase` runs one phase; the teacher (a frozen copy of the network
  after the `full` phase) is set with `freeze_teacher`. Steps compile once per
  input resolution (`step_cache_size` counts them).
  """
  space: space_lib.SearchSpace
  recipe: Recipe
  params: Params
  state: Params
  teacher: tuple[Params, Params] | None = None

  def __post_init__(self):
    self._place = _Placement(self.recipe.num_devices, self.recipe.batch_size)
    self._opt = _optimizer(self.recipe.weight_decay)
    self.params, self.state = self._place.state((self.params, self.state))
    self._step = jax.jit(self._step_impl, static_argnames=("resolution",
                                                           "use_kd"),
                         donate_argnums=(0, 1, 2))

  @classmethod
  def create(cls, space: space_lib.SearchSpace, recipe: Recipe, seed: int
             ) -> "SupernetTrainer":
    params, state = supernet.init(space, jax.random.key(seed))
    return cls(space, recipe, params, state)

  def freeze_teacher(self) -> None:
    self.teacher = jax.tree_util.tree_map(jnp.copy, (self.params, self.state))

  def sort_channels(self) -> None:
    self.params, self.state = self._place.state(
        supernet.sort_channels(self.params, self.state))

  def _step_impl(self, params, state, opt_state, teacher, images, labels, enc,
                 big, lr, resolution, use_kd):
    opt = self._opt
    x = preprocess(images, resolution)

    def loss_fn(p):
      logits, new_state = supernet.apply(self.space, p, state, x, enc, True)
      loss = _loss(logits, labels, self.recipe.label_smoothing)
      if use_kd:
        t_logits, _ = supernet.apply(self.space, teacher[0], teacher[1], x,
                                     big, False)
        loss = loss + self.recipe.kd_weight * _kd(
            logits, jax.lax.stop_gradient(t_logits))
      return loss, (new_state, logits)

    (loss, (new_state, logits)), g = jax.value_and_grad(
        loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(g, opt_state, params)
    acc = jnp.mean(jnp.argmax(logits, -1) == labels)
    return apply_lr(params, updates, lr), new_state, opt_state, {
        "loss": loss, "acc": acc}

  def step_cache_size(self) -> int:
    return self._step._cache_size()

  def train_phase(self, phase: str, x: np.ndarray, y: np.ndarray, steps: int,
                  rng: np.random.Generator, resolutions: Sequence[int] = (),
                  on_step: Callable[[int, dict], None] | None = None
                  ) -> list[space_lib.SubnetChoice]:
    """Runs `steps` steps of `phase` with a fresh cosine schedule; returns the
    subnets it trained, one per step."""
    draw = phase_sampler(self.space, phase, resolutions)
    lr_at = lr_schedule(self.recipe, steps)
    opt_state = self._place.state(self._opt.init(self.params))
    use_kd = phase != "full" and self.teacher is not None
    teacher = self.teacher if use_kd else None
    big = supernet.encode(self.space, space_lib.largest(self.space))
    batches = Batches(x, y, self.recipe.batch_size, rng)
    drawn = []
    for i in range(steps):
      choice = draw(rng)
      drawn.append(choice)
      params, state = self.params, self.state
      self.params, self.state, opt_state, m = self._step(
          params, state, opt_state, teacher, *self._place.batch(*next(batches)),
          supernet.encode(self.space, choice), big, jnp.float32(lr_at(i)),
          resolution=choice.resolution or self.space.resolution, use_kd=use_kd)
      if on_step is not None:
        on_step(i + 1, m)
    return drawn


def recalibrate_bn(space: space_lib.SearchSpace, params: Params, state: Params,
                   choice: space_lib.SubnetChoice, images: np.ndarray,
                   batch_size: int) -> Params:
  """Batch-norm running statistics of `choice` recomputed on `images`: the
  exact mean over batches of the per-batch statistics (momentum 1/(t+1))."""
  r = choice.resolution or space.resolution
  enc = supernet.encode(space, choice)
  n = len(images) // batch_size
  if n < 1:
    raise ValueError(f"BN recalibration needs at least {batch_size} images.")
  for t in range(n):
    state = _recal_step(space, r, params, state,
                        images[t * batch_size:(t + 1) * batch_size], enc,
                        jnp.float32(1.0 / (t + 1)))
  return state


@functools.partial(jax.jit, static_argnums=(0, 1))
def _recal_step(space, resolution, params, state, images, enc, momentum):
  _, new_state = supernet.apply(space, params, state,
                                preprocess(images, resolution), enc, True,
                                bn_momentum=momentum)
  return new_state


@functools.partial(jax.jit, static_argnums=(0, 1))
def _supernet_logits(space, resolution, params, state, images, enc):
  return supernet.apply(space, params, state, preprocess(images, resolution),
                        enc, False)[0]


def score_subnet(space: space_lib.SearchSpace, params: Params, state: Params,
                 choice: space_lib.SubnetChoice, calib_images: np.ndarray,
                 val_x: np.ndarray, val_y: np.ndarray,
                 batch_size: int = 250) -> float:
  """Validation accuracy of a subnet with inherited weights after BN
  recalibration (the search's fitness)."""
  r = choice.resolution or space.resolution
  s = recalibrate_bn(space, params, state, choice, calib_images, batch_size)
  enc = supernet.encode(space, choice)
  return accuracy(lambda xb: _supernet_logits(space, r, params, s, xb, enc),
                  val_x, val_y, batch_size)
