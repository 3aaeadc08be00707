"""Orbax checkpoints of the training state: save every N steps, keep the latest few and the
best validated one, resume."""

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager` holding a pytree state and JSON metadata."""

  def __init__(self, directory: str | pathlib.Path, *, every: int, keep: int):
    # A step saved with `metrics` (a validation) stays while it is the best one.
    best = policies.BestN(get_metric_fn=lambda m: m["value"], n=1,
                          keep_checkpoints_without_metrics=False)
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=policies.FixedIntervalPolicy(every),
        preservation_policy=policies.AnyPreservationPolicy([policies.LatestN(keep), best]),
        cleanup_tmp_directories=True,
    )
    self.manager = ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, *, force: bool = False,
           metrics: dict | None = None) -> bool:
    """`metrics`: {"value": v} of a validation at this step (higher is better)."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    return self.manager.save(step, args=args, force=force, metrics=metrics)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, target: Any, step: int | None = None) -> tuple[int, Any, dict] | None:
    """Restore into the structure, shapes and shardings of `target` (the latest step by default)."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    restored = self.manager.restore(step, args=args)
    return step, restored.state, restored.meta

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
