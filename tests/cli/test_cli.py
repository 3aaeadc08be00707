"""The `mmrec` command line, run as a user would."""

import json
import subprocess
import sys

import pytest

from mmrec import cli


def mmrec(*args, cwd=None, timeout=300):
  return subprocess.run([sys.executable, "-m", "mmrec.cli", *args], capture_output=True,
                        text=True, timeout=timeout, cwd=cwd)


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
  out = mmrec("data", "build", "--config=two_tower:huge")
  assert out.returncode != 0 and "unknown size 'huge'" in out.stderr


def test_data_build_prints_the_report(tmp_path):
  out = mmrec("data", "build", "--config=two_tower:tiny", f"--workdir={tmp_path}",
              "--config.data.seed=3", cwd=tmp_path)  # a packaged config, from any directory
  assert out.returncode == 0, out.stderr[-2000:]
  assert (tmp_path / "data" / "shop_tiny_seed3" / "meta.json").exists()
  assert "interactions" in out.stdout and "gini" in out.stdout
  assert out.stdout.splitlines()[-1].startswith("mmrec data build: done in ")
  assert out.stdout.splitlines()[-1].endswith(f"dataset in {tmp_path}/data/shop_tiny_seed3")
  assert "TPU" not in out.stderr  # no libtpu probing on a machine without one


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
  out_flag = [f"--out={tmp_path / 'r.csv'}"] if command == "recommend" else []
  out = mmrec(command, f"--workdir={tiny_workdir}", override, *out_flag)
  assert out.returncode != 0
  assert (f"mmrec {command}: {override} contradicts the model trained in {tiny_workdir} "
          f"(config.json has {has}); retrain or drop the override\n") in out.stderr
  assert "Traceback" not in out.stderr
  assert (metrics.stat().st_mtime_ns if metrics.exists() else None) == before
  assert not (tmp_path / "r.csv").exists()


def _one_line_error(out, tmp_path):
  """The checks every user mistake must pass; returns its one line."""
  assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
  assert "Traceback" not in out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1, out.stderr
  assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.jsonl"]  # nothing built
  return lines[0]


@pytest.mark.parametrize("args, message", [
    (("train", "--config.train.stpes=3"),
     "mmrec train: --config.train.stpes: no field 'stpes' in config.train; did you mean "
     "'steps'?"),
    (("train", "--config.trian.steps=3"),
     "mmrec train: --config.trian.steps: no field 'trian' in config; did you mean 'train'?"),
    (("train", "--config.train.steps=abc"),
     "mmrec train: --config.train.steps=abc: expected an integer (it is 3000 now)"),
    (("data", "build", "--config=two_tower:tiny", "--config.data.size=smal"),
     "mmrec data build: --config.data.size=smal: choose from tiny, small, medium; did you "
     "mean 'small'?"),
    (("train", "--config=two_tower:smal"),
     "mmrec train: --config two_tower:smal: unknown size 'smal' in config arg 'smal'; choose "
     "from ('tiny', 'small', 'medium'); did you mean 'small'?"),
    (("train", "--config=two_tower:small,id_onyl"),
     "mmrec train: --config two_tower:small,id_onyl: unknown variant 'id_onyl'; choose from "
     "['multimodal', 'id_only', 'content_only', 'minilm']; did you mean 'id_only'?"),
    (("train", "--config=movielens:ml100"),
     "mmrec train: --config movielens:ml100: unknown dataset 'ml100' in config arg 'ml100'; "
     "choose from ['ml100k', 'ml1m']; did you mean 'ml100k'?"),
    (("data", "build", "--config=two_towr:tiny"),
     "mmrec data build: --config two_towr:tiny: no packaged config 'two_towr'; did you mean "
     "'two_tower'? (packaged: movielens, pretrain, tpu, two_tower; or give a FILE.py path)"),
    (("train", "--config=nope/two_tower.py:tiny"),
     "mmrec train: --config nope/two_tower.py:tiny: no such file 'nope/two_tower.py'; give a "
     "FILE.py or a packaged config (movielens, pretrain, tpu, two_tower); did you mean 'two_tower'?"),
    (("train", "--stpes=3"),
     "mmrec train: unknown flag --stpes; `mmrec train --help` lists its flags"),
    (("train", "--k=3"),
     "mmrec train: --k is not a flag of `mmrec train` (its flags: --config, --workdir)"),
    (("train", "runs/x"), "mmrec train: unexpected argument 'runs/x'; flags are --NAME=VALUE"),
    (("evaluate", "--workdir=wrong/dir"),
     "mmrec evaluate: --workdir wrong/dir does not exist; train one there first: mmrec train "
     "--workdir wrong/dir"),
    (("export", "--workdir=."),
     "mmrec export: no checkpoint in checkpoints; train one there first: mmrec train "
     "--workdir ."),
    (("recommend", "--workdir=wrong", "--out=r.csv"),
     "mmrec recommend: --workdir wrong does not exist; train one there first: mmrec train "
     "--workdir wrong"),
    (("recommend", "--workdir=.", "--out=r.txt"),
     "mmrec recommend: --out FILE.csv or FILE.parquet is required"),
    (("export", "--workdir=.", "--add-items=feed.jsonl"),
     "mmrec export: --add-items: feed.jsonl:2: field 'title' is required and must not be empty"),
    (("data", "import", "movielns", "--path=."),
     "mmrec data import: unknown format 'movielns'; did you mean 'movielens'?; give one of "
     "movielens, recbole, amazon, hm, generic: mmrec data import FORMAT --path DIR"),
    (("data", "import", "generic", "--path=nowhere"),
     "mmrec data import: --path nowhere: give the directory of the raw generic files"),
    (("compile", "--config=two_tower:tiny"),
     "mmrec compile: --config two_tower:tiny has no `tpu` block; give a TPU config, e.g. "
     "--config tpu:v5e_16"),
    (("train", "--config=two_tower:tiny", "--workdir=w",
      "--config.model.warm_start.checkpoint=runs/pt"),
     "mmrec train: model.warm_start.checkpoint='runs/pt' is not a pretraining workdir "
     "(no checkpoints/ directory)"),
    (("pretrain", "--config=two_tower:tiny"),
     "mmrec pretrain: --config two_tower:tiny is not a pretraining config; give one, e.g. "
     "--config pretrain:small,all"),
])
def test_user_mistakes_fail_fast_in_one_line(tmp_path, args, message):
  (tmp_path / "feed.jsonl").write_text('{"item_id": "a", "title": "A"}\n{"item_id": "b"}\n')
  out = mmrec(*args, cwd=tmp_path, timeout=60)  # before any dataset or model is built
  assert _one_line_error(out, tmp_path) == message


@pytest.mark.parametrize("text, says", [
    ('{"data": {', "not valid JSON at line 1, column 11 (Expecting property name enclosed in "
                  "double quotes)"),
    ("[1, 2]", "a JSON list, not a config object"),
    ('{"data": {}, "model": {}, "train": 5, "eval": {}}', "section 'train' missing or not an "
     "object (a trained workdir's config has data, model, train, eval)"),
])
def test_a_damaged_saved_config_is_named_in_one_line(tmp_path, text, says):
  workdir = tmp_path / "w"
  (workdir / "checkpoints" / "3").mkdir(parents=True)
  (workdir / "config.json").write_text(text)
  for command in ("evaluate", "export"):
    out = mmrec(command, f"--workdir={workdir}", cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip() == (f"mmrec {command}: {workdir}/config.json: {says}; restore it, "
                                  "or name the config to use (--config / load(config=...))")


def test_debug_shows_the_traceback(tmp_path):
  out = mmrec("train", "--config.train.stpes=3", "--debug", cwd=tmp_path, timeout=60)
  assert out.returncode != 0
  assert "Traceback" in out.stderr and "UsageError: --config.train.stpes" in out.stderr


def test_unknown_command_suggests_one():
  out = mmrec("trian")
  assert out.returncode == 2
  assert out.stderr.splitlines()[0] == "mmrec: unknown command 'trian'; did you mean 'train'?"


def test_each_command_help_lists_only_its_flags_with_an_example():
  for name, command in cli.COMMANDS.items():
    out = mmrec(*name.split(), "--help")
    assert out.returncode == 0, name
    listed = {line.split(":")[0].strip() for line in out.stdout.splitlines()
              if line.startswith("  --")}
    want = {f"--{f}" for f in command.flags} | {"--debug"}
    if "config" in command.flags:
      want.add("--config.FIELD=VALUE")
    assert listed == want, name
    assert f"example:\n  mmrec {name}" in out.stdout, name


def test_top_level_usage_keeps_each_summary_whole():
  text = mmrec("--help").stdout
  body = text.split("commands:\n")[1].split("\n\n")[0]
  summaries, current = [], ""
  for line in body.splitlines():  # a summary wraps onto indented continuation lines
    if not line.startswith(" " * 17):
      if current:
        summaries.append(current)
      current = line.strip()
    else:
      current += " " + line.strip()
  summaries.append(current)
  assert len(summaries) == len(cli.COMMANDS)
  for summary in summaries:
    assert summary.endswith((".", ")")), summary
  assert max(len(line) for line in text.splitlines()) <= 110
