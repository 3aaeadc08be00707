"""Multi-host start-up: `jax.distributed.initialize` when the job has several processes.

Every `mmrec` command calls `initialize_from_env()` before any JAX computation.
It initializes when one of these is set:
  - MMREC_DISTRIBUTED=auto: let JAX detect the cluster (Cloud TPU VMs, SLURM, ...);
    tools/tpu_launch.sh sets it on every worker;
  - JAX_COORDINATOR_ADDRESS=host:port with JAX_NUM_PROCESSES and JAX_PROCESS_ID
    (explicit, e.g. several processes on one machine).
Otherwise the job is one process and nothing happens.
"""

from __future__ import annotations

import os

import jax


def initialize_from_env(environ: dict | None = None) -> bool:
  """Initialize jax.distributed from the environment; True if it did (or already had)."""
  env = os.environ if environ is None else environ
  if jax.distributed.is_initialized():
    return True
  if env.get("MMREC_DISTRIBUTED", "").lower() == "auto":
    jax.distributed.initialize()
    return True
  address = env.get("JAX_COORDINATOR_ADDRESS")
  if not address:
    return False
  try:
    num_processes, process_id = int(env["JAX_NUM_PROCESSES"]), int(env["JAX_PROCESS_ID"])
  except (KeyError, ValueError) as e:
    raise ValueError("JAX_COORDINATOR_ADDRESS is set: JAX_NUM_PROCESSES and JAX_PROCESS_ID must "
                     f"be integers too ({e!r})") from e
  if num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # if it runs on CPUs
    jax.distributed.initialize(coordinator_address=address, num_processes=num_processes,
                               process_id=process_id)
    return True
  return False
