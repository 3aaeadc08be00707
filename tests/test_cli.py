"""The `mmrec` command line, run as a user would."""

import subprocess
import sys

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
