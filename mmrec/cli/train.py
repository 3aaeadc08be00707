"""`mmrec train`, `pretrain`, `compile`, `evaluate` and `recommend`."""

from __future__ import annotations

import pathlib

from mmrec.cli.common import LastLog, check_trained, run_config, say
from mmrec.cli.config import UsageError
from mmrec.cli.registry import BETA, CONFIG, CONFIG_SPEC, K, OUT, SPLIT, USERS, WORKDIR, command
from mmrec.cli.start import start


@command("train", example="mmrec train --config two_tower:small --workdir runs/x "
         "--config.train.steps=500")
def _train():
  """Train the two-tower model (resumes from WORKDIR/checkpoints)."""
  from mmrec import jobs
  from mmrec.training import warm_start
  config, log = CONFIG.value, LastLog()
  try:  # before the dataset is built
    warm_start.check_sources(config.model.warm_start)
  except FileNotFoundError as e:
    raise UsageError(str(e)) from e
  say("train", "loading the dataset (built on first use), building the model and compiling "
      "the train step; step 1 starts once it is compiled ...")
  trained = jobs.train(config, WORKDIR.value, on_log=log)
  return (f"step {trained.step}{log.loss_text()}; checkpoints in {WORKDIR.value}/checkpoints, "
          f"TensorBoard logs in {WORKDIR.value}/tb")


@command("pretrain", checks_first=True,
         example="mmrec pretrain --config pretrain:small,all --workdir runs/pt")
def _pretrain():
  """Self-supervised pretraining of the item encoders (mmrec/configs/pretrain.py), then a
  linear probe of item attributes; writes WORKDIR/probe.json."""
  config = CONFIG.value
  if "pretrain" not in config:
    raise UsageError(f"--config {CONFIG_SPEC.value} is not a pretraining config; give one, "
                     f"e.g. --config pretrain:small,all")
  start()
  import json
  from mmrec.evaluation.probe import format_probe
  from mmrec.training import pretrain
  log = LastLog()
  say("pretrain", "loading the dataset (built on first use), building the encoders and "
      "compiling the train step; step 1 starts once it is compiled ...")
  run = pretrain.pretrain(config, WORKDIR.value, on_log=log)
  print(f"pretrained to step {run.step}; checkpoints in {WORKDIR.value}/checkpoints")
  rows = pretrain.probe(config, run)
  from mmrec.files import write_text_atomic
  write_text_atomic(pathlib.Path(WORKDIR.value) / "probe.json", json.dumps(rows, indent=2) + "\n")
  print(format_probe(rows))
  return (f"step {run.step}{log.loss_text()}; checkpoints in {WORKDIR.value}/checkpoints, "
          f"probe in {WORKDIR.value}/probe.json")


@command("compile", uses=("config",), checks_first=True,
         example="mmrec compile --config tpu:v5e_16,tiny")
def _compile():
  """Compile the train step ahead of time for the config's TPU topology (a CPU is enough)."""
  config = CONFIG.value
  if "tpu" not in config:
    raise UsageError(f"--config {CONFIG_SPEC.value} has no `tpu` block; give a TPU config, "
                     f"e.g. --config tpu:v5e_16")
  start(distributed=False)
  import jax
  jax.config.update("jax_platforms", "cpu")  # the TPU devices come from libtpu's topology
  from mmrec.training import compile as aot
  _, report = aot.compile_train_step(config, CONFIG.filename)
  print("\n".join(report.lines()))


@command("evaluate", checks_first=True,
         example="mmrec evaluate --workdir runs/x --config.eval.split=valid")
def _evaluate():
  """Full-ranking evaluation of WORKDIR's latest checkpoint; writes WORKDIR/metrics.json."""
  workdir = check_trained()
  config = run_config()
  start()
  from mmrec import jobs
  from mmrec.evaluation.evaluate import format_table
  from mmrec.training import two_tower as train_lib
  trained = train_lib.restore(workdir, config)
  rows = {config.name: jobs.evaluate(trained, config, workdir),
          "popularity": jobs.evaluate_popularity(config, workdir, data=trained.data)}
  print(format_table(rows))
  return f"{config.eval.split} split, metrics in {workdir / 'metrics.json'}"


@command("recommend", uses=("config", "workdir", "out", "k", "split", "users", "beta"),
         checks_first=True,
         example="mmrec recommend --workdir runs/x --out recs.csv --k 20")
def _recommend():
  """Write each user's top-K unseen items to --out (.csv or .parquet), in original ids."""
  if not OUT.value or pathlib.Path(OUT.value).suffix not in (".csv", ".parquet"):
    raise UsageError("--out FILE.csv or FILE.parquet is required")
  if K.value < 1:
    raise UsageError(f"--k={K.value} must be at least 1")
  users = None
  if USERS.value:  # one id a line
    try:
      lines = pathlib.Path(USERS.value).read_text(encoding="utf-8").splitlines()
    except OSError as e:
      raise UsageError(f"--users {USERS.value}: {e.strerror}") from e
    users = [line.strip() for line in lines if line.strip()]
  workdir = check_trained()
  config = run_config()
  start()
  from mmrec import jobs
  from mmrec.training import two_tower as train_lib
  trained = train_lib.restore(workdir, config)
  try:
    n = jobs.recommend(trained, config, workdir, OUT.value, k=K.value,
                       split=SPLIT.value, users=users, beta=BETA.value)
  except ValueError as e:
    raise UsageError(str(e)) from e
  print(f"wrote {n} recommendations to {OUT.value}")
  return f"{n} recommendations in {OUT.value}"
