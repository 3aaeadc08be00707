"""The registry of `mmrec` commands: every flag (absl), the `--config` holder and `@command`.

All flags are defined here, in one module: a command's `--help` lists those it `uses`,
and a flag of another command is refused by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from absl import flags

from mmrec.cli import config as config_lib

DEFAULT_CONFIG = "two_tower:small"

CONFIG_SPEC = flags.DEFINE_string(
    "config", DEFAULT_CONFIG, "A packaged config NAME[:ARG] (two_tower:small, "
    "two_tower:tiny,id_only, movielens:ml100k, pretrain:small,all) or a FILE.py[:ARG]; override "
    "any field with --config.FIELD=VALUE, e.g. --config.train.steps=100 or "
    "--config.data.split.cut_times='(1.6e9, 1.7e9)'.")
DEBUG = flags.DEFINE_bool("debug", False, "Show the Python traceback of an error.")


class LoadedConfig:
  """`--config`, loaded on first use with its --config.FIELD=VALUE overrides applied."""

  def __init__(self):
    self.overrides: list[tuple[str, str]] = []
    self.filename = ""
    self._value = None

  @property
  def present(self) -> bool:
    return flags.FLAGS["config"].present

  @property
  def value(self):
    if self._value is None:
      config, self.filename = config_lib.load(CONFIG_SPEC.value)
      config_lib.apply(config, self.overrides)
      self._value = config
    return self._value


CONFIG = LoadedConfig()
WORKDIR = flags.DEFINE_string("workdir", "runs/default",
                              "Directory for data, checkpoints, logs, metrics and exports.")
BUNDLE = flags.DEFINE_string("bundle", None, "Output bundle directory for `export`, the "
                             "bundle to serve for `serve` (default WORKDIR/bundle).")
PATH = flags.DEFINE_string("path", None, "`data import`: the directory of raw files "
                           "(sets data.import_.path).")
FORMAT = flags.DEFINE_string("format", None, "`data import`: movielens | recbole | amazon | hm | "
                             "generic; also the word after `data import`.")
COLUMNS = flags.DEFINE_string("columns", None, "`data import`: column mapping ROLE=NAME,... "
                              "(roles: user, item, timestamp, rating, item_id, title, "
                              "description, category, image; see docs/data.md).")
ADD_ITEMS = flags.DEFINE_string("add-items", None, "`export`: add the products of this JSON "
                                "Lines feed to the existing bundle, embedded with the trained "
                                "item tower (docs/bundle.md).")
REMOVE_ITEMS = flags.DEFINE_string("remove-items", None, "`export`: remove these item ids from "
                                   "the existing bundle: ID,ID,... or @FILE (one id a line).")
OUT = flags.DEFINE_string("out", None, "`recommend`: the output file, .csv or .parquet.")
K = flags.DEFINE_integer("k", 20, "`recommend`: items per user.")
SPLIT = flags.DEFINE_enum("split", None, ["valid", "test"], "`recommend`: whose history and "
                          "seen items (as evaluation on that split; default eval.split).")
USERS = flags.DEFINE_string("users", None, "`recommend`: a file of original user ids, one a "
                            "line (default: every user).")
BETA = flags.DEFINE_float("beta", None, "`recommend`: popularity calibration, score - beta * "
                          "ln(1 + training popularity) (default eval.beta).")
HOST = flags.DEFINE_string("host", "127.0.0.1", "`serve`: address to bind (loopback by default).")
PORT = flags.DEFINE_integer("port", 8000, "`serve`: TCP port.")
ARM_A = flags.DEFINE_string("arm-a", "popularity", "`abtest`: arm A: popularity | oracle | "
                            "bundle[=DIR][:beta=B,tail_balance=L] (DIR default WORKDIR/bundle, "
                            "beta default: the bundle's, chosen on valid).")
ARM_B = flags.DEFINE_string("arm-b", "bundle", "`abtest`: arm B, as --arm-a.")
SLATE = flags.DEFINE_integer("slate", 10, "`abtest`: items shown to each simulated user.")
AB_SEED = flags.DEFINE_integer("ab-seed", 0, "`abtest`: seed of the user split, the clicks "
                               "and the bootstrap.")


@dataclasses.dataclass(frozen=True)
class Command:
  run: Callable[[], str | None]  # returns the end of its summary line ("bundle in DIR")
  flags: tuple[str, ...]  # the flags it reads; `--help` lists these (and --debug)
  example: str
  checks_first: bool = False  # it calls start() itself, after its cheap checks


COMMANDS: dict[str, Command] = {}


def command(name: str, *, example: str, uses: tuple[str, ...] = ("config", "workdir"),
            checks_first: bool = False):
  """Registers the decorated function as `mmrec NAME`, reading the flags `uses`. Unless
  `checks_first`, JAX and TFDS are set up (start) before it runs."""

  def register(run):
    COMMANDS[name] = Command(run, tuple(uses), example, checks_first)
    return run

  return register
