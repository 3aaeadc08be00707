"""Checkpoint faults, planted in a tiny trained run: each kind of damage to its latest step
(a byte flipped in array data, a file truncated or deleted, garbage in a metadata JSON),
stray step directories, a damaged best step or best.json, and every step damaged.

Used by tests/training/test_checkpoint_faults.py and, through `fault_summary()`, by
benchmarks/faults.py. A case passes when restore returns exactly the expected step (its
state equal, bit for bit, to that step's undamaged state) and, when it had to skip a step,
warned naming it; or, with no good step left, refused with a one-line CheckpointError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator

import jax
import numpy as np

from mmrec.training import checkpoint

STEPS, EVERY = (10, 20, 30), 10  # the saved steps of the tiny run
LATEST, PREVIOUS = STEPS[-1], STEPS[-2]


def tiny_config(data_dir: str | pathlib.Path, steps: int = LATEST):
  from mmrec.configs import two_tower
  cfg = two_tower.get_config("tiny")
  cfg.data.data_dir = str(data_dir)
  cfg.train.update(steps=steps, log_every=5, checkpoint_every=EVERY, keep_checkpoints=len(STEPS))
  return cfg


def state_target(cfg, workdir: pathlib.Path):
  """A fresh training state of `cfg`'s model: the structure to restore into."""
  from flax import nnx

  from mmrec.training import two_tower as train_lib
  from mmrec.training.optim import make_optimizer
  model, _, _ = train_lib.prepare(cfg, workdir, warm_start=False)
  return nnx.state((model, nnx.Optimizer(model, make_optimizer(cfg.train), wrt=nnx.Param)))


def leaves(state) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(state)]


def same_state(a, b) -> bool:
  """Bit for bit (NaN included)."""
  a, b = leaves(a), leaves(b)
  return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and
                                  x.tobytes() == y.tobytes() for x, y in zip(a, b))


@dataclasses.dataclass
class Case:
  fault: str  # the kind, a row of the summary
  detail: str  # which file
  plant: Callable[[pathlib.Path], None]  # damages the checkpoints/ directory given
  expect: int | None  # the step restore must return; None: refused (CheckpointError)
  warns: tuple[str, ...] = ()  # what the warnings must name


def _files(step_dir: pathlib.Path) -> list[str]:
  return sorted(p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*") if p.is_file())


def _is_json(path: pathlib.Path) -> bool:
  try:
    json.loads(path.read_bytes())
  except (ValueError, UnicodeDecodeError):
    return False
  return True


def _flip(path: pathlib.Path) -> None:
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0x01
  path.write_bytes(bytes(data))


def _truncate(path: pathlib.Path) -> None:
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def cases(checkpoints: pathlib.Path) -> list[Case]:
  """Every case, for the checkpoints/ of a run saved at STEPS."""
  latest = checkpoints / str(LATEST)
  bad = (f"{latest} is damaged", f"restored step {PREVIOUS}")

  def on(name, damage):
    return lambda root: damage(root / str(LATEST) / name)

  out = []
  # Orbax rewrites it after committing the step; nothing reads it back on restore.
  files = [f for f in _files(latest) if f != "commit_success.txt"]
  for name in files:
    if "/d/" in f"/{name}":
      out.append(Case("byte flip in array data", name, on(name, _flip), PREVIOUS, bad))
    if _is_json(latest / name):
      out.append(Case("garbage metadata JSON", name,
                      on(name, lambda p: p.write_text('{"step": 3, garbage')), PREVIOUS, bad))
    if (latest / name).stat().st_size > 1:
      out.append(Case("truncated file", name, on(name, _truncate), PREVIOUS, bad))
    if name == checkpoint.CHECKSUMS_FILE:  # the data is intact: restored unverified
      out.append(Case("deleted file", name, on(name, pathlib.Path.unlink), LATEST,
                      (f"{latest} has no {checkpoint.CHECKSUMS_FILE}",)))
    elif name == checkpoint.ORBAX_METADATA:  # as a step Orbax never finalized: ignored
      out.append(Case("deleted file", name, on(name, pathlib.Path.unlink), PREVIOUS,
                      (f"ignoring {latest}", f"restored step {PREVIOUS}")))
    else:
      out.append(Case("deleted file", name, on(name, pathlib.Path.unlink), PREVIOUS, bad))
  out.append(Case("stray empty step directory", "checkpoints/999",
                  lambda root: (root / "999").mkdir(), LATEST, (f"{checkpoints / '999'}",)))
  out.append(Case("stray step directory with junk", "checkpoints/40/state/x",
                  lambda root: _junk_step(root / "40"), LATEST, (f"{checkpoints / '40'}",)))
  out.append(Case("leftover Orbax temporary directory", "checkpoints/40.orbax-checkpoint-tmp",
                  lambda root: _junk_step(root / "40.orbax-checkpoint-tmp-1"), LATEST))
  out.append(Case("every step damaged", "a data file of each step", _damage_all, None,
                  tuple(f"{checkpoints / str(s)} is damaged" for s in STEPS)))
  return out


def _junk_step(directory: pathlib.Path) -> None:
  (directory / "state").mkdir(parents=True)
  (directory / "state" / "x").write_bytes(b"\0" * 64)


def _damage_all(root: pathlib.Path) -> None:
  for step in STEPS:
    data = [p for p in (root / str(step)).rglob("*") if p.is_file() and p.parent.name == "d"]
    _flip(max(data, key=lambda p: p.stat().st_size))


class _Records(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages: list[str] = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@contextlib.contextmanager
def warnings_logged() -> Iterator[list[str]]:
  """The warnings mmrec.training.checkpoint and mmrec.training.loop log inside the block."""
  handler = _Records()
  loggers = [logging.getLogger(n) for n in ("mmrec.training.checkpoint", "mmrec.training.loop")]
  for logger in loggers:
    logger.addHandler(handler)
  try:
    yield handler.messages
  finally:
    for logger in loggers:
      logger.removeHandler(handler)


@dataclasses.dataclass
class Outcome:
  case: Case
  step: int | None  # restored, or None when refused
  error: str  # the CheckpointError's message, if refused
  warnings: list[str]
  problems: list[str]  # empty: as expected


def run_case(case: Case, pristine: pathlib.Path, scratch: pathlib.Path, target,
             references: dict[int, object], read_only: bool = True) -> Outcome:
  """Plants `case` in a copy of the `pristine` checkpoints/ and restores from it."""
  shutil.rmtree(scratch, ignore_errors=True)
  shutil.rmtree(scratch.with_name(scratch.name + checkpoint.DAMAGED_SUFFIX), ignore_errors=True)
  shutil.copytree(pristine, scratch)
  case.plant(scratch)
  step, error, problems = None, "", []
  with warnings_logged() as warned:
    ckpt = checkpoint.Checkpointer(scratch, every=1, keep=len(STEPS), read_only=read_only)
    try:
      step, state, meta = ckpt.restore(target)
      if not same_state(state, references[step]):
        problems.append(f"step {step} restored with other values than were saved")
      if meta != {"step": step}:
        problems.append(f"meta {meta}")
    except checkpoint.CheckpointError as e:
      error = str(e)
    finally:
      ckpt.close()
  if step != case.expect:
    problems.append(f"restored {step}, expected {case.expect} ({error})")
  if case.expect is None and (not error or "\n" in error):
    problems.append(f"not a one-line refusal: {error!r}")
  for text in case.warns:
    if not any(text.replace(str(pristine), str(scratch)) in w for w in [*warned, error]):
      problems.append(f"no warning names {text!r}: {warned}")
  return Outcome(case, step, error, list(warned), problems)


def references(pristine: pathlib.Path, target) -> dict[int, object]:
  """The undamaged state of each step."""
  ckpt = checkpoint.Checkpointer(pristine, every=1, keep=len(STEPS), read_only=True)
  try:
    return {s: ckpt.restore(target, step=s)[1] for s in STEPS}
  finally:
    ckpt.close()


def train_tiny(data_dir: pathlib.Path, workdir: pathlib.Path):
  from mmrec.training import two_tower as train_lib
  cfg = tiny_config(data_dir)
  train_lib.train(cfg, workdir)
  assert checkpoint.Checkpointer(workdir / "checkpoints", every=1, keep=3,
                                 read_only=True).steps() == sorted(STEPS, reverse=True)
  return cfg


def _outcome_name(case: Case) -> str:
  return "refused with message" if case.expect is None else "recovered"


def fault_summary() -> list[dict]:
  """One row per fault kind: {"area", "fault", "cases", "outcome", "ok", "example"}."""
  from mmrec.data import sources
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    cfg = tiny_config(tmp / "data")
    sources.build(cfg.data, tmp / "data")
    train_tiny(tmp / "data", tmp / "run")
    pristine = tmp / "run" / "checkpoints"
    target = state_target(cfg, tmp / "run")
    refs = references(pristine, target)
    rows: dict[str, dict] = {}
    for case in cases(pristine):
      outcome = run_case(case, pristine, tmp / "case" / "checkpoints", target, refs)
      row = rows.setdefault(case.fault, {"area": "checkpoint", "fault": case.fault, "cases": 0,
                                         "outcome": _outcome_name(case), "ok": True,
                                         "example": ""})
      row["cases"] += 1
      row["ok"] &= not outcome.problems
      if not row["example"]:
        shown = outcome.error or "; ".join(outcome.warnings) or "(restored, nothing to say)"
        row["example"] = shown.replace(str(tmp / "case"), "WORKDIR")
      if outcome.problems:
        row.setdefault("problems", []).append(f"{case.detail}: {outcome.problems}")
  return list(rows.values())
