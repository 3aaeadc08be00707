"""The `mmrec` command line, run as a user would."""

import json
import subprocess
import sys

import pytest

from mmrec import cli


def mmrec(*args, cwd=None):
  return subprocess.run([sys.executable, "-m", "mmrec.cli", *args], capture_output=True,
                        text=True, timeout=300, cwd=cwd)


def test_help_lists_the_commands():
  out = mmrec("--help")
  assert out.returncode == 0
  for name in cli.COMMANDS:
    assert name in out.stdout


def test_command_help_lists_its_flags():
  out = mmrec("train", "--help")
  assert out.returncode == 0
  assert "--config" in out.stdout and "--workdir" in out.stdout


def test_unknown_command_fails_with_usage():
  out = mmrec("fly")
  assert out.returncode == 2 and "usage: mmrec" in out.stderr


def test_bad_config_arg_names_it():
  out = mmrec("data", "build", f"--config={cli.DEFAULT_CONFIG}:huge")
  assert out.returncode != 0 and "unknown size 'huge'" in out.stderr


def test_data_build_prints_the_report(tmp_path):
  out = mmrec("data", "build", f"--config={cli.DEFAULT_CONFIG}:tiny", f"--workdir={tmp_path}",
              "--config.data.seed=3")
  assert out.returncode == 0, out.stderr[-2000:]
  assert (tmp_path / "data" / "shop_tiny_seed3" / "meta.json").exists()
  assert "interactions" in out.stdout and "gini" in out.stdout


def test_evaluate_applies_safe_overrides_on_the_trained_config(tiny_workdir):
  saved = (tiny_workdir / "config.json").read_text()
  out = mmrec("evaluate", f"--workdir={tiny_workdir}", "--config.eval.split=valid",
              "--config.model.embed_dim=32")  # the trained value: allowed
  assert out.returncode == 0, out.stderr[-3000:]
  metrics = json.loads((tiny_workdir / "metrics.json").read_text())
  assert metrics["split"] == "valid" and metrics["config"]["eval"]["split"] == "valid"
  assert (tiny_workdir / "config.json").read_text() == saved


@pytest.mark.parametrize("command, override, has", [
    ("evaluate", "--config.model.embed_dim=128", "32"),
    ("recommend", "--config.data.protocol=random", '"leave_last_out"'),
    ("export", "--config.train.steps=5", "20")])
def test_run_commands_refuse_overrides_that_contradict_the_model(tiny_workdir, tmp_path,
                                                                 command, override, has):
  metrics = tiny_workdir / "metrics.json"
  before = metrics.stat().st_mtime_ns if metrics.exists() else None
  out = mmrec(command, f"--workdir={tiny_workdir}", override, f"--out={tmp_path / 'r.csv'}")
  assert out.returncode != 0
  assert (f"mmrec {command}: {override} contradicts the model trained in {tiny_workdir} "
          f"(config.json has {has}); retrain or drop the override\n") in out.stderr
  assert "Traceback" not in out.stderr
  assert (metrics.stat().st_mtime_ns if metrics.exists() else None) == before
  assert not (tmp_path / "r.csv").exists()
