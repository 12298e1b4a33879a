"""Multi-device and multi-host helpers built on `jax.sharding`."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# Environment variables that mean "this process is one of several in a job".
_CLUSTER_VARS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")
_MULTI_TASK_VARS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")

_initialized = False


def maybe_initialize_distributed() -> bool:
  """Calls `jax.distributed.initialize()` in a recognised multi-process job.

  JAX itself discovers the coordinator, process count and id from the cluster
  environment (SLURM, Open MPI, TPU pods, or JAX_COORDINATOR_ADDRESS +
  JAX_NUM_PROCESSES + JAX_PROCESS_ID). Single-process runs are left alone.

  Returns:
    Whether the distributed runtime was initialised.
  """
  global _initialized
  if _initialized:
    return True
  multi = any(os.environ.get(v) for v in _CLUSTER_VARS) or any(
      int(os.environ.get(v, "1") or 1) > 1 for v in _MULTI_TASK_VARS)
  if not multi:
    return False
  jax.distributed.initialize()
  _initialized = True
  return True


def data_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D mesh with axis "data" over the first `num_devices` devices (0: all)."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise ValueError(
          f"num_devices={num_devices} but only {len(devices)} devices exist "
          f"({devices[0].platform}). On CPU, set XLA_FLAGS="
          f"--xla_force_host_platform_device_count={num_devices} to simulate them.")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))
