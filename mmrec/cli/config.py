"""Configs for the command line: `--config NAME[:ARG]` or `--config FILE.py[:ARG]`, and the
dotted overrides `--config.a.b=VALUE`, checked field by field with did-you-mean suggestions.

Packaged configs are the modules of `mmrec.configs` with a `get_config` (`two_tower:small`,
`movielens:ml100k`, `pretrain:small,all`), so every command works from any directory.
Overrides are parsed here rather than by ml_collections' config_flags, which refuses
fields whose default is None (`data.split.cut_times`): a value is read with the type of
the field it replaces, and as a Python literal where the field is None or a tuple.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import pathlib
import pkgutil
import re
from collections.abc import Iterable, Sequence
from typing import Any

import ml_collections

PACKAGE = "mmrec.configs"
# String fields with a fixed set of values, checked when overridden (before any work);
# tests/cli/test_config.py keeps them equal to the code that reads them.
CHOICES = {
    "data.size": ("tiny", "small", "medium"),  # mmrec.configs.two_tower.SIZES
    "data.source": ("shop", "import"),
    "data.protocol": ("leave_last_out", "random", "temporal", "cold_items", "given"),
    "data.import_.format": ("movielens", "recbole", "amazon", "hm", "generic"),
    "eval.split": ("valid", "test"),
    "train.objective": ("profile", "next_item"),
    "train.compute_dtype": ("float32", "bfloat16"),
    "model.user.kind": ("profile", "sequence"),
}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class UsageError(Exception):
  """A user mistake; the command line prints it as one line, `mmrec COMMAND: message`."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
  """"; did you mean 'x'?" for the closest of `choices`, else ""."""
  close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
  return f"; did you mean {close[0]!r}?" if close else ""


def packaged_configs() -> list[str]:
  """Names of the configs shipped in `mmrec.configs` (modules with a `get_config`)."""
  package = importlib.import_module(PACKAGE)
  names = []
  for info in pkgutil.iter_modules(package.__path__):
    spec = importlib.util.find_spec(f"{PACKAGE}.{info.name}")
    source = pathlib.Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    if re.search(r"^def get_config\(", source, re.M):
      names.append(info.name)
  return sorted(names)


def load(spec: str) -> tuple[ml_collections.ConfigDict, str]:
  """The config named by `spec` (`NAME[:ARG]` or `FILE.py[:ARG]`) and the file it came from."""
  name, sep, arg = spec.partition(":")
  packaged = packaged_configs()
  is_path = name.endswith(".py") or "/" in name or "\\" in name
  if is_path:
    path = pathlib.Path(name).expanduser()
    if not path.is_file():
      raise UsageError(f"--config {spec}: no such file {str(path)!r}; give a FILE.py or a "
                       f"packaged config ({', '.join(packaged)})"
                       f"{did_you_mean(path.stem, packaged)}")
    module_spec = importlib.util.spec_from_file_location(f"_mmrec_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    filename = str(path)
  elif name in packaged:
    module = importlib.import_module(f"{PACKAGE}.{name}")
    filename = module.__file__
  else:
    raise UsageError(f"--config {spec}: no packaged config {name!r}{did_you_mean(name, packaged)} "
                     f"(packaged: {', '.join(packaged)}; or give a FILE.py path)")
  if not hasattr(module, "get_config"):
    raise UsageError(f"--config {spec}: {filename} defines no get_config(arg)")
  try:
    config = module.get_config(arg) if sep else module.get_config()
  except ValueError as e:  # an unknown size, variant, dataset, ...: the config names it
    raise UsageError(f"--config {spec}: {e}{suggest_choice(str(e))}") from e
  return config, filename


def suggest_choice(message: str) -> str:
  """Did-you-mean for a config's "unknown KIND 'VALUE' ...; choose from (...)" message."""
  found = re.search(r"unknown [\w ]+? '([^']*)'.*choose from (.*)$", message)
  return did_you_mean(found[1], re.findall(r"'([^']*)'", found[2])) if found else ""


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """`argv` without its `--config.FIELD=VALUE` (or `--config.FIELD VALUE`) arguments, and
  those as (FIELD, VALUE) pairs in order."""
  rest, overrides, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      field, sep, value = arg[len("--config."):].partition("=")
      if not sep:
        if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
          raise UsageError(f"{arg}: give a value, e.g. {arg}=VALUE")
        i, value = i + 1, argv[i + 1]
      overrides.append((field, value))
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def resolve(config: ml_collections.ConfigDict, field: str) -> tuple[Any, str]:
  """The node holding `field` (dotted) and the field's last name; UsageError naming the
  first unknown part, with a suggestion."""
  *parents, name = field.split(".")
  node, where = config, "config"
  for depth, key in enumerate([*parents, name]):
    if not isinstance(node, (ml_collections.ConfigDict, dict)):
      raise UsageError(f"--config.{field}: {where} is a value, not a section")
    if key not in node:
      raise UsageError(f"--config.{field}: no field {key!r} in {where}"
                       f"{did_you_mean(key, node.keys())}")
    if depth < len(parents):
      node, where = node[key], f"{where}.{key}"
  return node, name


def parse_value(field: str, text: str, current: Any) -> Any:
  """`text` read with the type of `current`, the value it replaces."""
  def fail(expected: str):
    raise UsageError(f"--config.{field}={text}: expected {expected} (it is {current!r} now)")

  if isinstance(current, (ml_collections.ConfigDict, dict)):
    raise UsageError(f"--config.{field} is a section; override its fields, e.g. "
                     f"--config.{field}.{next(iter(current), 'FIELD')}=VALUE")
  if isinstance(current, bool):
    if text.lower() not in (*_TRUE, *_FALSE):
      fail("true or false")
    return text.lower() in _TRUE
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      fail("an integer")
  if isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      fail("a number")
  if isinstance(current, str):
    return text
  if isinstance(current, (tuple, list)):
    value = _literal(text)
    if value is _NOT_LITERAL:  # text,image -> ("text", "image")
      value = tuple(part.strip() for part in text.strip("()[]").split(",") if part.strip())
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)
  value = _literal(text)  # None (or another type): a Python literal, else the text itself
  return text if value is _NOT_LITERAL else value


_NOT_LITERAL = object()


def _literal(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return _NOT_LITERAL


def apply(config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, str]]) -> None:
  """Applies the (FIELD, VALUE) `overrides` to `config` in place."""
  for field, text in overrides:
    node, name = resolve(config, field)
    value = parse_value(field, text, node[name])
    if field in CHOICES and value != node[name] and value not in CHOICES[field]:
      raise UsageError(f"--config.{field}={text}: choose from {', '.join(CHOICES[field])}"
                       f"{did_you_mean(text, CHOICES[field])}")
    try:
      node[name] = value
    except (TypeError, ValueError) as e:
      raise UsageError(f"--config.{field}={text}: {e}") from e
