"""Checkpoints under faults: kill -9 at several points of a tiny run, then resume
bit-identically; every kind of damage to the latest step falls back to the newest good
step with a warning naming the bad one; stray step directories are ignored; with no good
step left, a one-line error. The cases live in checkpoint_faults_lib.py (shared with
benchmarks/faults.py)."""

import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest
from flax import nnx

from mmrec.files import write_text_atomic
from mmrec.training import checkpoint, loop
from mmrec.training.scalar_log import read_scalars
from mmrec.training import two_tower as train_lib

_spec = importlib.util.spec_from_file_location(
    "_mmrec_checkpoint_faults", pathlib.Path(__file__).with_name("checkpoint_faults_lib.py"))
lib = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = lib
_spec.loader.exec_module(lib)

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pristine(tiny_data_dir, tmp_path_factory):
  """A tiny run saved at lib.STEPS, its restore target and each step's saved state."""
  workdir = tmp_path_factory.mktemp("pristine")
  cfg = lib.train_tiny(tiny_data_dir, workdir)
  target = lib.state_target(cfg, workdir)
  return {"cfg": cfg, "workdir": workdir, "target": target,
          "states": lib.references(workdir / "checkpoints", target)}


def copy_run(pristine, tmp_path) -> pathlib.Path:
  workdir = tmp_path / "run"
  shutil.copytree(pristine["workdir"], workdir)
  return workdir


def saved_state(workdir: pathlib.Path, target, step: int):
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", every=1, keep=9, read_only=True)
  try:
    assert checkpoint.verify_step(workdir / "checkpoints" / str(step)) is None
    return ckpt.restore(target, step=step)[1]
  finally:
    ckpt.close()


def test_every_planted_fault_falls_back_or_refuses(pristine, tmp_path):
  cases = lib.cases(pristine["workdir"] / "checkpoints")
  kinds = {c.fault for c in cases}
  assert {"byte flip in array data", "truncated file", "deleted file", "garbage metadata JSON",
          "stray empty step directory", "every step damaged"} <= kinds
  assert len(cases) >= 40
  failed = []
  for case in cases:
    outcome = lib.run_case(case, pristine["workdir"] / "checkpoints", tmp_path / "checkpoints",
                           pristine["target"], pristine["states"])
    if outcome.problems:
      failed.append((case.fault, case.detail, outcome.problems))
  assert not failed


def test_a_writer_sets_damaged_steps_aside_and_keeps_them(pristine, tmp_path):
  checkpoints = tmp_path / "checkpoints"
  flip = next(c for c in lib.cases(pristine["workdir"] / "checkpoints")
              if c.fault == "byte flip in array data")
  outcome = lib.run_case(flip, pristine["workdir"] / "checkpoints", checkpoints,
                         pristine["target"], pristine["states"], read_only=False)
  assert not outcome.problems
  aside = tmp_path / f"checkpoints{checkpoint.DAMAGED_SUFFIX}"
  assert sorted(p.name for p in checkpoints.iterdir()) == ["10", "20"]
  assert [p.name for p in aside.iterdir()] == ["30"]  # kept, for whoever wants to look
  assert any(f"moved {checkpoints / '30'} to {aside / '30'}" in w for w in outcome.warnings)


def test_training_resumes_past_damaged_and_stray_steps(pristine, tmp_path):
  workdir = copy_run(pristine, tmp_path)
  checkpoints = workdir / "checkpoints"
  (checkpoints / "999").mkdir()  # before the fix, Orbax counted it the latest and saved nothing
  lib._junk_step(checkpoints / "40.orbax-checkpoint-tmp-7")
  data = max((checkpoints / "30").rglob("d/*"), key=lambda p: p.stat().st_size)
  lib._flip(data)
  with lib.warnings_logged() as warned:
    trained = train_lib.train(pristine["cfg"], workdir)
  assert trained.step == lib.LATEST
  assert any(f"{checkpoints / '30'} is damaged" in w for w in warned), warned
  assert any("restored step 20" in w for w in warned), warned
  assert any(f"ignoring {checkpoints / '999'}" in w for w in warned), warned
  assert sorted(p.name for p in checkpoints.iterdir()) == ["10", "20", "30"]
  resumed = saved_state(workdir, pristine["target"], lib.LATEST)
  assert lib.same_state(resumed, pristine["states"][lib.LATEST])  # retrained 21..30 exactly
  assert lib.same_state(nnx.state(trained.model),
                        nnx.state(train_lib.restore(workdir, pristine["cfg"]).model))


def test_damaged_best_step_falls_back_to_the_newest_good_one(pristine, tmp_path):
  workdir = copy_run(pristine, tmp_path)
  write_text_atomic(workdir / loop.BEST_FILE, json.dumps(
      {"step": 20, "value": 0.5, "metric": "valid/recall@20"}))
  clean = train_lib.restore(workdir, pristine["cfg"])
  assert clean.step == 20
  lib._truncate(workdir / "checkpoints" / "20" / "meta" / "metadata")
  with lib.warnings_logged() as warned:
    restored = train_lib.restore(workdir, pristine["cfg"])
  assert restored.step == lib.LATEST
  assert any(f"{workdir / 'checkpoints' / '20'} is damaged: meta/metadata has" in w
             for w in warned), warned
  assert any("restored step 30" in w and "instead of step 20" in w for w in warned), warned
  assert (workdir / "checkpoints" / "20").is_dir()  # a reader moves nothing


@pytest.mark.parametrize("garbage", ['{"step": 2', '["not", "an", "object"]', '{"value": 1}',
                                     "\udcff"])
def test_damaged_best_json_is_ignored_with_a_warning(pristine, tmp_path, garbage):
  path = tmp_path / loop.BEST_FILE
  path.write_bytes(garbage.encode("utf-8", "surrogateescape"))
  with lib.warnings_logged() as warned:
    assert loop.read_best(tmp_path) is None
  assert len(warned) == 1 and f"ignoring {path}, which is damaged" in warned[0], warned


def test_resumed_validated_run_keeps_its_best_step(tiny_config, tmp_path):
  """Orbax's own best-N policy forgets the metrics when a run restarts; the best step
  (best.json) must survive later saves all the same."""
  cfg = tiny_config
  cfg.train.update(steps=30, validate_every=10, patience=0, keep_checkpoints=1)
  values = iter([0.1, 0.5, 0.2])  # best at step 20

  class Interrupt(Exception):
    pass

  def stop_at_20(step, _):  # step 20 validated and saved
    if step == 20:
      raise Interrupt

  with pytest.raises(Interrupt):
    train_lib.train(cfg, tmp_path, on_log=stop_at_20, validate=lambda *_: next(values))
  trained = train_lib.train(cfg, tmp_path, validate=lambda *_: next(values))
  assert trained.step == 20
  steps = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
  assert steps == ["20", "30"]  # the latest (keep_checkpoints=1) and the best
  assert train_lib.restore(tmp_path, cfg).step == 20


KILL_SCRIPT = """
import os, pathlib, signal, sys, time
sys.path.insert(0, {tests!r})
import checkpoint_faults_lib as lib
from mmrec.training import checkpoint
from mmrec.training import two_tower as train_lib
data_dir, workdir, mode = sys.argv[1:4]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
on_log = None
def die_at_15(step, _):  # between two checkpoints, step 10's written
  while step == 15 and not (pathlib.Path(workdir) / "checkpoints" / "10").is_dir():
    time.sleep(0.05)
  step == 15 and die()
if mode == "after step 15":
  on_log = die_at_15
if mode == "while saving step 20":  # its files written, Orbax not yet done
  sums = checkpoint.file_checksums
  checkpoint.file_checksums = lambda d: die() if d.name.startswith("20.") else sums(d)
train_lib.train(lib.tiny_config(data_dir), workdir, on_log=on_log)
"""


@pytest.mark.parametrize("mode", ["after step 15", "while saving step 20"])
def test_kill_9_then_resume_is_bit_identical(pristine, tiny_data_dir, tmp_path, mode):
  workdir = tmp_path / "killed"
  script = KILL_SCRIPT.format(tests=str(ROOT / "tests" / "training"))
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  child = subprocess.Popen([sys.executable, "-c", script, str(tiny_data_dir), str(workdir), mode],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  _, err = child.communicate(timeout=600)
  assert child.returncode == -signal.SIGKILL, err.decode()[-2000:]
  steps = checkpoint.Checkpointer(workdir / "checkpoints", every=1, keep=9,
                                  read_only=True).steps()
  if mode == "after step 15":
    assert steps == [10]
    logged = read_scalars(workdir / "tb", "train/loss")  # flushed at each log
    assert sorted(logged) == [5, 10, 15]
  if mode == "while saving step 20":
    assert steps == [10] and list((workdir / "checkpoints").glob("20.orbax-checkpoint-tmp*"))
  trained = train_lib.train(pristine["cfg"], workdir)  # resumes
  assert trained.step == lib.LATEST
  assert not list((workdir / "checkpoints").glob("*.orbax-checkpoint-tmp*"))
  resumed = saved_state(workdir, pristine["target"], lib.LATEST)
  assert lib.same_state(resumed, pristine["states"][lib.LATEST])


def test_no_good_step_left_is_one_line_from_the_cli(pristine, tmp_path):
  workdir = copy_run(pristine, tmp_path)
  lib._damage_all(workdir / "checkpoints")
  run = subprocess.run([sys.executable, "-m", "mmrec.cli", "evaluate", "--workdir", str(workdir)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert run.returncode != 0
  assert "Traceback" not in run.stdout + run.stderr
  last = (run.stdout + run.stderr).strip().splitlines()[-1]
  assert last.startswith(f"mmrec evaluate: no good checkpoint in {workdir / 'checkpoints'}: "
                         "step 30 ("), last
  assert "step 20 (" in last and "step 10 (" in last and "train again" in last
  assert not (workdir / "metrics.json").exists()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
  path = tmp_path / "config.json"
  write_text_atomic(path, "old")
  mode = path.stat().st_mode & 0o777
  with pytest.raises(TypeError):
    write_text_atomic(path, None)  # fails inside the write
  assert path.read_text() == "old"
  assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary left
  write_text_atomic(path, "new")
  assert path.read_text() == "new" and path.stat().st_mode & 0o777 == mode
  umask = os.umask(0)
  os.umask(umask)
  assert mode == 0o666 & ~umask
