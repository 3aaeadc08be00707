"""Orbax checkpoints of the training state: save every N steps, keep the latest few and the
best validated one, resume; every step verified on restore.

Each step directory holds CHECKSUMS_FILE, the size and SHA-256 of each of its files,
written in Orbax's temporary directory before Orbax renames it into place (its
post-finalization callback), so a step is committed with its checksums or not at all.
Restore verifies them first; a damaged step is skipped with a warning naming it, and the
newest good step is restored instead. Step directories Orbax never finalized (no
_CHECKPOINT_METADATA, e.g. a stray empty `checkpoints/999`) are ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from mmrec.files import write_text_atomic

CHECKSUMS_FILE = "mmrec_checksums.json"
ORBAX_METADATA = "_CHECKPOINT_METADATA"  # written by Orbax into every step it finalized
# Rewritten by Orbax after it renamed the step into place (commit time), so not summed;
# the metadata is checked to be a JSON object instead.
UNSUMMED = (CHECKSUMS_FILE, ORBAX_METADATA, "commit_success.txt")
_TMP_MARK = ".orbax-checkpoint-tmp"  # Orbax's temporary step directories: STEP{_TMP_MARK}*
DAMAGED_SUFFIX = ".damaged"  # checkpoints/ -> checkpoints.damaged/: steps set aside, kept

log = logging.getLogger(__name__)


MISSING_CHECKSUMS = f"{CHECKSUMS_FILE} is missing"


class CheckpointError(Exception):
  """No usable checkpoint (all damaged), or one that does not fit the model: one line,
  which the command line prints as `mmrec COMMAND: message` (cli.USER_ERRORS)."""


def one_line(error: BaseException, limit: int = 300) -> str:
  """`Type: first line of the message`, at most `limit` characters of it."""
  first = (str(error).strip().splitlines() or [""])[0]
  return f"{type(error).__name__}: {first[:limit]}"


def _sync(name: str) -> None:
  """A barrier over all processes (nothing with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def file_checksums(directory: pathlib.Path) -> dict[str, dict]:
  """{relative path: {"size", "sha256"}} of every file under `directory`, but the step's
  own files that Orbax still updates after finalizing it (UNSUMMED)."""
  sums = {}
  for path in sorted(directory.rglob("*")):
    if path.is_file() and path.relative_to(directory).as_posix() not in UNSUMMED:
      digest = hashlib.sha256()
      with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
          digest.update(chunk)
      sums[path.relative_to(directory).as_posix()] = {"size": path.stat().st_size,
                                                      "sha256": digest.hexdigest()}
  return sums


def verify_step(directory: pathlib.Path) -> str | None:
  """What is wrong with the step directory (its files against CHECKSUMS_FILE), or None."""
  try:
    if not isinstance(json.loads((directory / ORBAX_METADATA).read_bytes()), dict):
      raise ValueError("not a JSON object")
  except (ValueError, UnicodeDecodeError) as e:
    return f"{ORBAX_METADATA} is unreadable ({one_line(e, 100)})"
  try:
    listed = json.loads((directory / CHECKSUMS_FILE).read_text())["files"]
    if not isinstance(listed, dict):
      raise TypeError("'files' is not an object")
  except FileNotFoundError:
    return MISSING_CHECKSUMS
  except (ValueError, KeyError, TypeError) as e:
    return f"{CHECKSUMS_FILE} is unreadable ({one_line(e, 100)})"
  for name, want in listed.items():
    path = directory / name
    if not path.is_file():
      return f"{name} is missing"
    if path.stat().st_size != want.get("size"):
      return f"{name} has {path.stat().st_size} bytes, {want.get('size')} were saved"
  found = file_checksums(directory)
  for name, want in listed.items():
    if found[name]["sha256"] != want.get("sha256"):
      return f"{name} does not match its checksum"
  return None


@dataclasses.dataclass
class KeepStep:
  """Orbax preservation policy: keep `step` (the best validated one; None: none)."""

  step: int | None = None

  def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> Sequence[bool]:
    return [c.step == self.step for c in checkpoints]


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager` holding a pytree state and JSON metadata.

  `keep_step`: a step to keep beyond the latest `keep` (the best one; `save(best=True)`
  moves it). `read_only`: never saves, deletes or moves anything (evaluate, export), so it
  may read a workdir that a run is still training in.
  """

  def __init__(self, directory: str | pathlib.Path, *, every: int, keep: int,
               keep_step: int | None = None, read_only: bool = False):
    self.directory = pathlib.Path(directory).absolute()
    self.read_only = read_only
    self.best = KeepStep(keep_step)
    self._saving: int | None = None
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=policies.FixedIntervalPolicy(every),
        preservation_policy=policies.AnyPreservationPolicy([policies.LatestN(keep), self.best]),
        cleanup_tmp_directories=not read_only,  # a read-only reader leaves a writer's saves be
        create=not read_only,  # (not Orbax's read_only, which logs warnings for nothing)
        async_options=ocp.AsyncOptions(post_finalization_callback=self._write_checksums),
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    """The steps Orbax finalized, newest first (damaged ones included: see `restore`)."""
    if not self.directory.is_dir():
      return []
    steps = [int(p.name) for p in self.directory.iterdir()
             if p.name.isdigit() and (p / ORBAX_METADATA).is_file()]
    return sorted(steps, reverse=True)

  def incomplete(self) -> list[pathlib.Path]:
    """Step directories that Orbax never finalized (ignored)."""
    if not self.directory.is_dir():
      return []
    return sorted(p for p in self.directory.iterdir()
                  if p.name.isdigit() and not (p / ORBAX_METADATA).is_file())

  def latest_step(self) -> int | None:
    return next(iter(self.steps()), None)

  def save(self, step: int, state: Any, meta: dict, *, force: bool = False,
           best: bool = False) -> bool:
    """Saves `step` (every `every` steps, or when forced); `best`: keep it as the best."""
    if not (force or best or self.manager.should_save(step)):
      return False
    self.manager.wait_until_finished()  # the previous save's checksums are written
    if best:
      self.best.step = step
    self._saving = step
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    return self.manager.save(step, args=args, force=True)

  def _write_checksums(self) -> None:
    """Orbax's post-finalization callback (primary process, data of all processes written):
    the step's checksums, into its temporary directory before Orbax renames it."""
    step = self._saving
    candidates = [*sorted(self.directory.glob(f"{step}{_TMP_MARK}*")), self.directory / str(step)]
    directory = next(p for p in candidates if p.is_dir())
    write_text_atomic(directory / CHECKSUMS_FILE,
                      json.dumps({"format": 1, "step": step, "files": file_checksums(directory)}))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, target: Any, step: int | None = None) -> tuple[int, Any, dict] | None:
    """Restores into the structure, shapes and shardings of `target` `step`, or the newest
    good step: by default, or (with a warning) when `step` is damaged or missing.

    A damaged step is skipped with a warning naming it; unless read-only, it is moved to
    `checkpoints.damaged/` (kept, out of the way of the steps to come). None: no step at
    all; CheckpointError: no good step, or a good one that does not fit `target`."""
    self.manager.wait_until_finished()  # saves and deletions of old steps are done
    _sync("mmrec restore")  # every process sees the same steps
    incomplete, steps = self.incomplete(), self.steps()
    for path in incomplete:
      log.warning("ignoring %s: a step directory that Orbax never finalized (no %s)", path,
                  ORBAX_METADATA)
    if step is None and not steps:
      self._set_aside([int(p.name) for p in incomplete])
      return None
    order = [step, *(s for s in steps if s != step)] if step is not None else steps
    unfinished = [int(p.name) for p in incomplete if any(p.iterdir())]
    wanted = step if step is not None else max(steps + unfinished)
    damaged, aside = [], [int(p.name) for p in incomplete]
    try:
      for candidate in order:
        problem = self._problem(candidate)
        unverified = problem == MISSING_CHECKSUMS
        if unverified:
          log.warning("checkpoint %s has no %s (saved by an older mmrec?): restoring it "
                      "unverified", self.directory / str(candidate), CHECKSUMS_FILE)
        if not problem or unverified:
          try:
            restored = self._restore(candidate, target)
          except CheckpointError as e:
            problem = one_line(e.__cause__) if unverified else self._problem(candidate)
            if not problem:  # intact, verified, and yet it does not fit
              raise
          else:
            if candidate != wanted:
              log.warning("restored step %d, the newest good checkpoint in %s, instead of "
                          "step %d", candidate, self.directory, wanted)
            return restored
        damaged.append(f"{candidate} ({problem})")
        aside.append(candidate)
        log.warning("checkpoint %s is damaged: %s; %s", self.directory / str(candidate), problem,
                    "trying an older step" if candidate != order[-1] else "no older step left")
    finally:
      self._set_aside(aside)
    moved = ("; train again to replace them" if self.read_only else
             f"; they were moved to {self._aside_directory()}, so training again starts from "
             "step 0")
    raise CheckpointError(f"no good checkpoint in {self.directory}: step "
                          f"{'; step '.join(damaged)}{moved}")

  def _problem(self, step: int) -> str | None:
    directory = self.directory / str(step)
    if not (directory / ORBAX_METADATA).is_file():
      return "no such step" if not directory.exists() else "incomplete (never finalized)"
    return verify_step(directory)

  def _restore(self, step: int, target: Any) -> tuple[int, Any, dict]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    try:
      restored = self.manager.restore(step, args=args)
    except Exception as e:  # verified bytes that do not fit: another model or config
      raise CheckpointError(f"{self.directory / str(step)} does not fit this model "
                            f"({one_line(e)}); was it trained with another config?") from e
    return step, restored.state, restored.meta

  def _aside_directory(self) -> pathlib.Path:
    return self.directory.with_name(self.directory.name + DAMAGED_SUFFIX)

  def _set_aside(self, steps: list[int]) -> None:
    """Moves damaged and unfinished steps out of checkpoints/ (unless read-only): Orbax
    would count them as the latest and refuse to save the steps before them."""
    if self.read_only or (not steps and jax.process_count() == 1):
      return
    _sync("mmrec set aside checkpoints: start")  # no process still reads them
    if jax.process_index() == 0:
      for step in steps:
        source = self.directory / str(step)
        if not source.exists():
          continue
        aside = self._aside_directory()
        aside.mkdir(exist_ok=True)
        target, n = aside / str(step), 1
        while target.exists():
          target, n = aside / f"{step}-{n}", n + 1
        source.rename(target)
        log.warning("moved %s to %s", source, target)
    _sync("mmrec set aside checkpoints: done")
    self.manager.reload()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
