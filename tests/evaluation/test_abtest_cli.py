"""`mmrec abtest` run as a user would, on the session's tiny shop (no model needed for the
popularity and oracle arms), and its one-line errors."""

import json
import subprocess
import sys


def mmrec(*args, cwd=None):
  return subprocess.run([sys.executable, "-m", "mmrec.cli", *args], capture_output=True,
                        text=True, timeout=300, cwd=cwd)


def test_abtest_writes_and_prints_the_result(tiny_data_dir, tmp_path):
  out = mmrec("abtest", "--config=two_tower:tiny", f"--workdir={tmp_path}",
              f"--config.data.data_dir={tiny_data_dir}", "--arm-a=popularity", "--arm-b=oracle",
              "--slate=5", "--ab-seed=2")
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads((tmp_path / "abtest.json").read_text())
  assert result["k"] == 5 and result["seed"] == 2
  assert (result["arms"]["A"]["name"], result["arms"]["B"]["name"]) == ("popularity", "oracle")
  assert result["arms"]["A"]["users"] + result["arms"]["B"]["users"] == 200
  ctr = result["difference"]["ctr"]
  assert ctr["significant"] and ctr["difference"] > 0  # the oracle's CTR is higher
  assert "| ctr |" in out.stdout and out.stdout.splitlines()[-1].endswith(
      f"results in {tmp_path}/abtest.json")


def test_abtest_errors_are_one_line(tmp_path):
  out = mmrec("abtest", f"--workdir={tmp_path}", "--arm-a=popular")
  assert out.returncode == 2
  assert out.stderr.strip() == ("mmrec abtest: arm kind 'popular' is not known; choose one of "
                                "popularity, oracle, bundle")
  out = mmrec("abtest", f"--workdir={tmp_path}", "--arm-b=bundle:beta=0")
  assert out.returncode == 2
  assert out.stderr.strip() == (f"mmrec abtest: no bundle in {tmp_path}/bundle; export one "
                                f"first: mmrec export --workdir {tmp_path}")
  out = mmrec("abtest", f"--workdir={tmp_path}", "--arm-a=oracle", "--arm-b=popularity",
              "--slate=0")
  assert out.returncode == 2 and "--slate=0 must be at least 1" in out.stderr
