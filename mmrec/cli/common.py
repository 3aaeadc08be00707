"""What several commands share: the trained WORKDIR and its config, progress lines."""

from __future__ import annotations

import pathlib

from mmrec import saved_config
from mmrec.cli import config as config_lib
from mmrec.cli.config import UsageError
from mmrec.cli.registry import CONFIG, WORKDIR


def check_trained() -> pathlib.Path:
  """WORKDIR, if it holds a trained model's checkpoint; else a UsageError, before any
  data is built or model restored."""
  workdir = pathlib.Path(WORKDIR.value)
  train = f"train one there first: mmrec train --workdir {workdir}"
  if not workdir.is_dir():
    raise UsageError(f"--workdir {workdir} does not exist; {train}")
  checkpoints = workdir / "checkpoints"
  steps = [p for p in checkpoints.iterdir() if p.name.isdigit()] if checkpoints.is_dir() else []
  if not steps:
    raise UsageError(f"no checkpoint in {checkpoints}; {train}")
  return workdir


class LastLog:
  """An `on_log` callback that keeps the last logged training loss."""

  def __init__(self):
    self.loss = None

  def __call__(self, step: int, logged: dict) -> None:
    self.loss = logged.get("loss", self.loss)

  def loss_text(self) -> str:
    return "" if self.loss is None else f", final loss {self.loss:.4f}"


def say(command_name: str, message: str) -> None:
  print(f"mmrec {command_name}: {message}", flush=True)


# Overrides that leave the trained model as it is (fields, or whole sections), applied on
# top of WORKDIR/config.json by evaluate, export and recommend.
RUN_OVERRIDES = ("eval", "mesh", "name", "data.data_dir")


def run_config():
  """The config a trained workdir was made with (WORKDIR/config.json), unless --config is
  given explicitly. Its --config.FIELD overrides apply when RUN_OVERRIDES allows them; any
  other must repeat the trained value, else the command stops naming it."""
  import json
  if CONFIG.present or not (pathlib.Path(WORKDIR.value) / saved_config.FILE).exists():
    return CONFIG.value
  try:
    config = saved_config.read(WORKDIR.value)
  except saved_config.SavedConfigError as e:
    raise UsageError(str(e)) from e
  for field, text in CONFIG.overrides:
    if any(field == p or field.startswith(f"{p}.") for p in RUN_OVERRIDES):
      config_lib.apply(config, [(field, text)])
      continue
    node, name = config_lib.resolve(config, field)
    has = node[name]
    if json.dumps(config_lib.parse_value(field, text, has)) != json.dumps(has):
      raise UsageError(f"--config.{field}={text} contradicts the model trained in "
                       f"{WORKDIR.value} (config.json has {json.dumps(has)}); retrain or drop "
                       f"the override")
  return config
