"""WORKDIR/config.json: the config a workdir was trained with, read back and checked."""

from __future__ import annotations

import json
import pathlib

import ml_collections

FILE = "config.json"
SECTIONS = ("data", "model", "train", "eval")  # what a trained two-tower workdir's config has


class SavedConfigError(ValueError):
  """config.json is missing or damaged; the message names the file and what is wrong."""


def read(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """WORKDIR/config.json as a ConfigDict, JSON lists back to tuples (FileNotFoundError if
  there is none, SavedConfigError if it is damaged)."""
  path = pathlib.Path(workdir) / FILE
  fix = "restore it, or name the config to use (--config / load(config=...))"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: is {workdir} a trained workdir "
                            "(`mmrec train --workdir ...`)?")
  try:
    saved = json.loads(path.read_text(encoding="utf-8"))
  except UnicodeDecodeError as e:
    raise SavedConfigError(f"{path}: not UTF-8 text (byte {e.start}); {fix}") from e
  except json.JSONDecodeError as e:
    raise SavedConfigError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno} "
                           f"({e.msg}); {fix}") from e
  if not isinstance(saved, dict):
    raise SavedConfigError(f"{path}: a JSON {type(saved).__name__}, not a config object; {fix}")
  bad = [s for s in SECTIONS if not isinstance(saved.get(s), dict)]
  if bad:
    raise SavedConfigError(f"{path}: section {', '.join(map(repr, bad))} missing or not an "
                           f"object (a trained workdir's config has {', '.join(SECTIONS)}); {fix}")
  return ml_collections.ConfigDict(tuples(saved))


def tuples(value):
  """JSON lists back to the config's tuples (config.json cannot tell them apart)."""
  if isinstance(value, dict):
    return {k: tuples(v) for k, v in value.items()}
  return tuple(tuples(v) for v in value) if isinstance(value, list) else value
