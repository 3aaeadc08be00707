"""The `mmrec` command line: `mmrec COMMAND [--config NAME[:ARG]] [--workdir DIR] [--config.a.b=V]`.

Each command registers itself with `@command(NAME, uses=FLAGS, example=...)`: the flags it
reads (its `--help` lists only those), and an example. A user mistake is one line,
`mmrec COMMAND: what is wrong, and what to do`, and exit status 2; `--debug` shows the
traceback. Configs and their overrides are read by mmrec.cli_config.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import textwrap
import time
from collections.abc import Callable

from absl import flags

from mmrec import cli_config
from mmrec.cli_config import UsageError

DEFAULT_CONFIG = "two_tower:small"

_CONFIG_SPEC = flags.DEFINE_string(
    "config", DEFAULT_CONFIG, "A packaged config NAME[:ARG] (two_tower:small, "
    "two_tower:tiny,id_only, movielens:ml100k, pretrain:small,all) or a FILE.py[:ARG]; override "
    "any field with --config.FIELD=VALUE, e.g. --config.train.steps=100 or "
    "--config.data.split.cut_times='(1.6e9, 1.7e9)'.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show the Python traceback of an error.")


class _LoadedConfig:
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
      config, self.filename = cli_config.load(_CONFIG_SPEC.value)
      cli_config.apply(config, self.overrides)
      self._value = config
    return self._value


_CONFIG = _LoadedConfig()
_WORKDIR = flags.DEFINE_string("workdir", "runs/default",
                               "Directory for data, checkpoints, logs, metrics and exports.")
_BUNDLE = flags.DEFINE_string("bundle", None, "Output bundle directory for `export`, the "
                              "bundle to serve for `serve` (default WORKDIR/bundle).")
_PATH = flags.DEFINE_string("path", None, "`data import`: the directory of raw files "
                            "(sets data.import_.path).")
_FORMAT = flags.DEFINE_string("format", None, "`data import`: movielens | recbole | amazon | hm | "
                              "generic; also the word after `data import`.")
_COLUMNS = flags.DEFINE_string("columns", None, "`data import`: column mapping ROLE=NAME,... "
                               "(roles: user, item, timestamp, rating, item_id, title, "
                               "description, category, image; see docs/data.md).")
_ADD_ITEMS = flags.DEFINE_string("add-items", None, "`export`: add the products of this JSON "
                                 "Lines feed to the existing bundle, embedded with the trained "
                                 "item tower (docs/bundle.md).")
_REMOVE_ITEMS = flags.DEFINE_string("remove-items", None, "`export`: remove these item ids from "
                                    "the existing bundle: ID,ID,... or @FILE (one id a line).")
_OUT = flags.DEFINE_string("out", None, "`recommend`: the output file, .csv or .parquet.")
_K = flags.DEFINE_integer("k", 20, "`recommend`: items per user.")
_SPLIT = flags.DEFINE_enum("split", None, ["valid", "test"], "`recommend`: whose history and "
                           "seen items (as evaluation on that split; default eval.split).")
_USERS = flags.DEFINE_string("users", None, "`recommend`: a file of original user ids, one a "
                             "line (default: every user).")
_BETA = flags.DEFINE_float("beta", None, "`recommend`: popularity calibration, score - beta * "
                           "ln(1 + training popularity) (default eval.beta).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "`serve`: address to bind (loopback by default).")
_PORT = flags.DEFINE_integer("port", 8000, "`serve`: TCP port.")
_ARM_A = flags.DEFINE_string("arm-a", "popularity", "`abtest`: arm A: popularity | oracle | "
                             "bundle[=DIR][:beta=B,tail_balance=L] (DIR default WORKDIR/bundle, "
                             "beta default: the bundle's, chosen on valid).")
_ARM_B = flags.DEFINE_string("arm-b", "bundle", "`abtest`: arm B, as --arm-a.")
_SLATE = flags.DEFINE_integer("slate", 10, "`abtest`: items shown to each simulated user.")
_AB_SEED = flags.DEFINE_integer("ab-seed", 0, "`abtest`: seed of the user split, the clicks "
                                "and the bootstrap.")


@dataclasses.dataclass(frozen=True)
class Command:
  run: Callable[[], str | None]  # returns the end of its summary line ("bundle in DIR")
  flags: tuple[str, ...]  # the flags it reads; `--help` lists these (and --debug)
  example: str
  checks_first: bool = False  # it calls _start() itself, after its cheap checks


COMMANDS: dict[str, Command] = {}


def command(name: str, *, example: str, uses: tuple[str, ...] = ("config", "workdir"),
            checks_first: bool = False):
  """Registers the decorated function as `mmrec NAME`, reading the flags `uses`. Unless
  `checks_first`, JAX and TFDS are set up (_start) before it runs."""

  def register(run):
    COMMANDS[name] = Command(run, tuple(uses), example, checks_first)
    return run

  return register


def _check_trained() -> pathlib.Path:
  """WORKDIR, if it holds a trained model's checkpoint; else a UsageError, before any
  data is built or model restored."""
  workdir = pathlib.Path(_WORKDIR.value)
  train = f"train one there first: mmrec train --workdir {workdir}"
  if not workdir.is_dir():
    raise UsageError(f"--workdir {workdir} does not exist; {train}")
  checkpoints = workdir / "checkpoints"
  steps = [p for p in checkpoints.iterdir() if p.name.isdigit()] if checkpoints.is_dir() else []
  if not steps:
    raise UsageError(f"no checkpoint in {checkpoints}; {train}")
  return workdir


@command("data build", example="mmrec data build --config two_tower:tiny --workdir runs/tiny")
def _data_build():
  """Generate the configured dataset and store it as TFDS ArrayRecord datasets."""
  from mmrec import jobs
  from mmrec.data.clean import format_report
  from mmrec.data.dataset import load_dataset
  path = jobs.build_data(_CONFIG.value, _WORKDIR.value)
  report = dict(load_dataset(path).meta.get("report", {}))
  cleaning = report.pop("cleaning", None)
  print(f"built {path}")
  for key, value in report.items():
    print(f"  {key}: {value}")
  if cleaning:
    print(format_report(cleaning))
  return f"dataset in {path}"


@command("data import", uses=("config", "workdir", "format", "path", "columns"),
         checks_first=True,
         example="mmrec data import recbole --path ml-100k/ --workdir runs/ml")
def _data_import():
  """Import raw files (`mmrec data import FORMAT --path DIR`), clean them, print the data report."""
  import json
  from mmrec.data.importers import FORMATS, DataImportError
  from mmrec.data.importers.build import REPORT_FILE, format_report, import_dataset
  config = _CONFIG.value
  imp = config.data.import_
  config.data.source = "import"
  imp.format = _FORMAT.value or imp.format
  imp.path = _PATH.value or imp.path
  if imp.format not in FORMATS:
    raise UsageError(f"unknown format {imp.format!r}{cli_config.did_you_mean(imp.format, FORMATS)}"
                     f"; give one of {', '.join(FORMATS)}: mmrec data import FORMAT --path DIR")
  if not imp.path or not pathlib.Path(imp.path).exists():
    raise UsageError(f"--path {imp.path or '(none)'}: give the directory of the raw "
                     f"{imp.format} files")
  for pair in (_COLUMNS.value or "").split(","):
    role, sep, column = pair.partition("=")
    if pair.strip() and (not sep or role.strip() not in imp.columns):
      raise UsageError(f"--columns {pair!r}: expected ROLE=NAME with ROLE in "
                       f"{sorted(imp.columns)}{cli_config.did_you_mean(role.strip(), imp.columns)}")
    if pair.strip():
      imp.columns[role.strip()] = column.strip()
  _start()
  # As mmrec.data.sources.dataset_path, without importing the model-side modules (faster).
  data_dir = config.data.data_dir or pathlib.Path(_WORKDIR.value) / "data"
  try:
    path = import_dataset(config.data, data_dir)
  except DataImportError as e:
    sys.exit(f"mmrec data import: {e}")
  print(format_report(json.loads((path / REPORT_FILE).read_text())))
  print(f"built {path}")
  return f"dataset in {path}"


@command("train", example="mmrec train --config two_tower:small --workdir runs/x "
         "--config.train.steps=500")
def _train():
  """Train the two-tower model (resumes from WORKDIR/checkpoints)."""
  from mmrec import jobs
  config, log = _CONFIG.value, _LastLog()
  _say("train", "loading the dataset (built on first use), building the model and compiling "
       "the train step; step 1 starts once it is compiled ...")
  trained = jobs.train(config, _WORKDIR.value, on_log=log)
  return (f"step {trained.step}{log.loss_text()}; checkpoints in {_WORKDIR.value}/checkpoints, "
          f"TensorBoard logs in {_WORKDIR.value}/tb")


class _LastLog:
  """An `on_log` callback that keeps the last logged training loss."""

  def __init__(self):
    self.loss = None

  def __call__(self, step: int, logged: dict) -> None:
    self.loss = logged.get("loss", self.loss)

  def loss_text(self) -> str:
    return "" if self.loss is None else f", final loss {self.loss:.4f}"


def _say(command_name: str, message: str) -> None:
  print(f"mmrec {command_name}: {message}", flush=True)


# Overrides that leave the trained model as it is (fields, or whole sections), applied on
# top of WORKDIR/config.json by evaluate, export and recommend.
RUN_OVERRIDES = ("eval", "mesh", "name", "data.data_dir")


def _run_config():
  """The config a trained workdir was made with (WORKDIR/config.json), unless --config is
  given explicitly. Its --config.FIELD overrides apply when RUN_OVERRIDES allows them; any
  other must repeat the trained value, else the command stops naming it."""
  import json
  import ml_collections
  saved = pathlib.Path(_WORKDIR.value) / "config.json"
  if _CONFIG.present or not saved.exists():
    return _CONFIG.value
  config = ml_collections.ConfigDict(_tuples(json.loads(saved.read_text())))
  for field, text in _CONFIG.overrides:
    if any(field == p or field.startswith(f"{p}.") for p in RUN_OVERRIDES):
      cli_config.apply(config, [(field, text)])
      continue
    node, name = cli_config.resolve(config, field)
    has = node[name]
    if json.dumps(cli_config.parse_value(field, text, has)) != json.dumps(has):
      raise UsageError(f"--config.{field}={text} contradicts the model trained in "
                       f"{_WORKDIR.value} (config.json has {json.dumps(has)}); retrain or drop "
                       f"the override")
  return config


def _tuples(value):
  """JSON lists back to the config's tuples (config.json cannot tell them apart)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


@command("evaluate", checks_first=True,
         example="mmrec evaluate --workdir runs/x --config.eval.split=valid")
def _evaluate():
  """Full-ranking evaluation of WORKDIR's latest checkpoint; writes WORKDIR/metrics.json."""
  workdir = _check_trained()
  config = _run_config()
  _start()
  from mmrec import jobs, train
  from mmrec.evaluation.evaluate import format_table
  trained = train.restore(workdir, config)
  rows = {config.name: jobs.evaluate(trained, config, workdir),
          "popularity": jobs.evaluate_popularity(config, workdir, data=trained.data)}
  print(format_table(rows))
  return f"{config.eval.split} split, metrics in {workdir / 'metrics.json'}"


@command("export", uses=("config", "workdir", "bundle", "add-items", "remove-items"),
         checks_first=True,
         example="mmrec export --workdir runs/x   # or --add-items new.jsonl, --remove-items "
         "SKU-1,SKU-7")
def _export():
  """Export WORKDIR's items as a ScaNN bundle; --add-items/--remove-items update it
  (docs/bundle.md)."""
  workdir = pathlib.Path(_WORKDIR.value)
  bundle = pathlib.Path(_BUNDLE.value or workdir / "bundle")
  if _ADD_ITEMS.value or _REMOVE_ITEMS.value:  # update the existing bundle in place
    if _ADD_ITEMS.value:  # the whole feed is checked before anything else
      from mmrec.retrieval import new_items
      try:
        new_items.read_feed(_ADD_ITEMS.value)
      except ValueError as e:
        raise UsageError(f"--add-items: {e}") from e
    if not (bundle / "manifest.json").is_file():
      raise UsageError(f"no bundle in {bundle} to update; export one first: "
                       f"mmrec export --workdir {workdir}")
    remove = _REMOVE_ITEMS.value or ""
    if remove.startswith("@"):
      try:
        remove = pathlib.Path(remove[1:]).read_text(encoding="utf-8").replace("\n", ",")
      except OSError as e:
        raise UsageError(f"--remove-items {_REMOVE_ITEMS.value}: {e.strerror}: {e.filename}")
    remove_ids = [i.strip() for i in remove.split(",") if i.strip()]
    trained, config = None, None
    if _ADD_ITEMS.value:
      _check_trained()
      config = _run_config()
      _start()
      from mmrec import train
      trained = train.restore(workdir, config)
    _start()
    from mmrec import jobs
    try:
      reports = jobs.update_bundle(trained, config, bundle, add_feed=_ADD_ITEMS.value,
                                   remove_ids=remove_ids)
    except ValueError as e:
      raise UsageError(str(e)) from e
    for report in reports:
      print(" ".join(f"{k}={v}" for k, v in report.items()))
    return f"bundle {bundle} updated"
  _check_trained()
  config = _run_config()
  _start()
  from mmrec import jobs, train
  trained = train.restore(workdir, config)
  out = jobs.export(trained, config, bundle)
  print(f"exported {out}")
  return f"bundle in {out}"


@command("recommend", uses=("config", "workdir", "out", "k", "split", "users", "beta"),
         checks_first=True,
         example="mmrec recommend --workdir runs/x --out recs.csv --k 20")
def _recommend():
  """Write each user's top-K unseen items to --out (.csv or .parquet), in original ids."""
  if not _OUT.value or pathlib.Path(_OUT.value).suffix not in (".csv", ".parquet"):
    raise UsageError("--out FILE.csv or FILE.parquet is required")
  if _K.value < 1:
    raise UsageError(f"--k={_K.value} must be at least 1")
  users = None
  if _USERS.value:  # one id a line
    try:
      lines = pathlib.Path(_USERS.value).read_text(encoding="utf-8").splitlines()
    except OSError as e:
      raise UsageError(f"--users {_USERS.value}: {e.strerror}") from e
    users = [line.strip() for line in lines if line.strip()]
  workdir = _check_trained()
  config = _run_config()
  _start()
  from mmrec import jobs, train
  trained = train.restore(workdir, config)
  try:
    n = jobs.recommend(trained, config, workdir, _OUT.value, k=_K.value,
                       split=_SPLIT.value, users=users, beta=_BETA.value)
  except ValueError as e:
    raise UsageError(str(e)) from e
  print(f"wrote {n} recommendations to {_OUT.value}")
  return f"{n} recommendations in {_OUT.value}"


@command("abtest", uses=("config", "workdir", "arm-a", "arm-b", "slate", "ab-seed"),
         checks_first=True, example="mmrec abtest --workdir runs/x --arm-a popularity "
         "--arm-b bundle:beta=0")
def _abtest():
  """Simulated A/B test on the embedded shop: its users, split at random between two arms,
  click and convert by the shop's own choice model; writes WORKDIR/abtest.json
  (docs/evaluation.md)."""
  from mmrec.evaluation import abtest
  workdir = pathlib.Path(_WORKDIR.value)
  try:
    arms = [abtest.parse_arm(spec, workdir / "bundle") for spec in (_ARM_A.value, _ARM_B.value)]
  except ValueError as e:
    raise UsageError(str(e)) from e
  for arm in arms:
    if arm.kind == "bundle" and not (pathlib.Path(arm.bundle) / "manifest.json").is_file():
      raise UsageError(f"no bundle in {arm.bundle}; export one first: mmrec export "
                       f"--workdir {workdir}")
  if _SLATE.value < 1:
    raise UsageError(f"--slate={_SLATE.value} must be at least 1")
  config = _run_config()
  _start()
  try:
    result = abtest.run_in_workdir(config, workdir, *arms, k=_SLATE.value, seed=_AB_SEED.value)
  except ValueError as e:
    raise UsageError(str(e)) from e
  print(abtest.markdown(result))
  return f"results in {workdir / 'abtest.json'}"


@command("demo", example="mmrec demo --workdir runs/demo   # or --config two_tower:tiny")
def _demo():
  """Build the shop, train multimodal and ID-only two-towers, evaluate, export, query."""
  from mmrec import demo
  demo.run(_CONFIG.value, _WORKDIR.value)
  return f"outputs in {_WORKDIR.value}"


@command("serve", uses=("workdir", "bundle", "host", "port"),
         example="mmrec serve --bundle runs/x/bundle --port 8000   # API docs at /docs")
def _serve():
  """Serve a bundle over HTTP (numpy + scann, no jax): /v1/recommend, /v1/similar, /healthz,
  /metrics, and the API's docs at /docs."""
  from mmrec.serving import server  # its BundleError is reported as a user error
  bundle = _BUNDLE.value or pathlib.Path(_WORKDIR.value) / "bundle"
  server.serve(bundle, _HOST.value, _PORT.value)


@command("bundle verify", uses=("bundle",),
         example="mmrec bundle verify runs/x/bundle   # exit status 1 if anything is wrong")
def _bundle_verify():
  """Verify a bundle: every file's SHA-256, the manifest's fields, the arrays and ids."""
  from mmrec.serving import BundleError, verify  # numpy + scann only
  if not _BUNDLE.value:
    raise UsageError("give the bundle directory: mmrec bundle verify BUNDLE_DIR")
  try:
    print(verify.summary_line(verify.verify_bundle(_BUNDLE.value)))
  except BundleError as e:
    sys.exit(f"mmrec bundle verify: {e}")


@command("compile", uses=("config",), checks_first=True,
         example="mmrec compile --config tpu_configs/v5e_16.py   # from the repo root")
def _compile():
  """Compile the train step ahead of time for the config's TPU topology (a CPU is enough)."""
  config = _CONFIG.value
  if "tpu" not in config:
    raise UsageError(f"--config {_CONFIG_SPEC.value} has no `tpu` block; give a TPU config, "
                     f"e.g. --config tpu_configs/v5e_16.py")
  _start(distributed=False)
  import jax
  jax.config.update("jax_platforms", "cpu")  # the TPU devices come from libtpu's topology
  from mmrec import compile as aot
  _, report = aot.compile_train_step(config, _CONFIG.filename)
  print("\n".join(report.lines()))


@command("pretrain", checks_first=True,
         example="mmrec pretrain --config pretrain:small,all --workdir runs/pt")
def _pretrain():
  """Self-supervised pretraining of the item encoders (mmrec/configs/pretrain.py), then a
  linear probe of item attributes; writes WORKDIR/probe.json."""
  config = _CONFIG.value
  if "pretrain" not in config:
    raise UsageError(f"--config {_CONFIG_SPEC.value} is not a pretraining config; give one, "
                     f"e.g. --config pretrain:small,all")
  _start()
  import json
  from mmrec import pretrain
  from mmrec.evaluation.probe import format_probe
  log = _LastLog()
  _say("pretrain", "loading the dataset (built on first use), building the encoders and "
       "compiling the train step; step 1 starts once it is compiled ...")
  run = pretrain.pretrain(config, _WORKDIR.value, on_log=log)
  print(f"pretrained to step {run.step}; checkpoints in {_WORKDIR.value}/checkpoints")
  rows = pretrain.probe(config, run)
  from mmrec.files import write_text_atomic
  write_text_atomic(pathlib.Path(_WORKDIR.value) / "probe.json", json.dumps(rows, indent=2) + "\n")
  print(format_probe(rows))
  return (f"step {run.step}{log.loss_text()}; checkpoints in {_WORKDIR.value}/checkpoints, "
          f"probe in {_WORKDIR.value}/probe.json")


def _usage() -> str:
  lines = ["usage: mmrec COMMAND [--config NAME[:ARG] | FILE.py[:ARG]] [--workdir DIR] "
           "[--config.FIELD=VALUE ...]", "", "commands:"]
  for name, cmd in COMMANDS.items():
    summary = textwrap.wrap(_summary(_as_command(cmd).run), 100 - 17)
    lines += [f"  {name:<14} {summary[0]}", *(f"{'':17}{line}" for line in summary[1:])]
  lines += ["", "`mmrec COMMAND --help` lists its flags, with an example."]
  return "\n".join(lines)


def _summary(run: Callable) -> str:
  """The first sentence of a command's docstring, whole."""
  text = " ".join((run.__doc__ or "").split("\n\n")[0].split())
  end = text.find(". ")
  return text if end < 0 else text[:end + 1]


def _as_command(cmd: Command | Callable) -> Command:
  """A registered Command; a plain function (an entry put in COMMANDS directly) reads all
  of this module's flags."""
  if isinstance(cmd, Command):
    return cmd
  return Command(cmd, tuple(f.name for f in _module_flags() if f.name != "debug"), "")


def _module_flags() -> list:
  """The flags defined in this module (whatever name it runs under)."""
  for module_flags in flags.FLAGS.flags_by_module_dict().values():
    if any(f.name == "workdir" for f in module_flags):
      return module_flags
  return []


def _help(name: str, cmd: Command) -> str:
  doc = " ".join((cmd.run.__doc__ or "").split())
  lines = [f"usage: mmrec {name} [flags]", "", *textwrap.wrap(doc, 100)]
  if cmd.example:
    lines += ["", "example:", f"  {cmd.example}"]
  lines += ["", "flags:"]
  known = {f.name: f for f in _module_flags()}
  for flag_name in [*cmd.flags, "debug"]:
    flag = known[flag_name]
    default = "" if flag.default is None else f" (default: {flag.default!r})"
    lines += textwrap.wrap(f"--{flag.name}: {flag.help}{default}", 100, initial_indent="  ",
                           subsequent_indent="      ")
  if "config" in cmd.flags:
    lines += ["  --config.FIELD=VALUE: override any field of the config (a typo is refused, "
              "with a suggestion)"]
  return "\n".join(lines)


# Exceptions, by class name (anywhere in the class's bases), that are the user's mistake:
# printed as one line, without a traceback unless --debug.
USER_ERRORS = {"UsageError", "DataImportError", "BundleError", "CheckpointError"}
RUN_COMMANDS = ("evaluate", "export", "recommend", "abtest")  # they reuse WORKDIR/config.json
NO_JAX = ("serve", "bundle verify")  # numpy + scann only: they skip _quiet's jax and TFDS
POSITIONAL = {"data import": "format", "bundle verify": "bundle"}  # the word after the name


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  words = argv[1:3]
  name = next((n for n in COMMANDS if n.split() == words[:len(n.split())]), None)
  if name is None:
    asked = argv[1:2] in (["-h"], ["--help"])
    if argv[1:] and not asked:
      word = " ".join(w for w in words if not w.startswith("-"))
      print(f"mmrec: unknown command {word!r}{cli_config.did_you_mean(word, COMMANDS)}",
            file=sys.stderr)
    print(_usage(), file=sys.stdout if asked else sys.stderr)
    sys.exit(0 if asked else 2)
  cmd = _as_command(COMMANDS[name])
  rest = argv[1 + len(name.split()):]
  if name in POSITIONAL and rest and not rest[0].startswith("-"):
    rest = [f"--{POSITIONAL[name]}={rest[0]}", *rest[1:]]  # `mmrec data import FORMAT ...`
  if {"-h", "--help"} & set(rest):
    print(_help(name, cmd))
    return
  debug = any(a in ("--debug", "--debug=true") for a in rest)
  started = time.perf_counter()
  try:
    rest, _CONFIG.overrides = cli_config.split_overrides(rest)
    _parse_flags(name, cmd, rest)
    if "config" in cmd.flags and name not in RUN_COMMANDS:
      _CONFIG.value  # a bad config name or override stops here, before any work
    summary = cmd.run() if name in NO_JAX else _quiet(cmd, name)()
  except Exception as e:  # user errors become one line
    if debug or not any(c.__name__ in USER_ERRORS for c in type(e).__mro__):
      raise
    message = str(e)
    if "did you mean" not in message:
      message += cli_config.suggest_choice(message)
    print(f"mmrec {name}: {message}", file=sys.stderr)
    sys.exit(2)
  if name != "serve":
    print(f"mmrec {name}: done in {_duration(time.perf_counter() - started)}"
          + (f"; {summary}" if summary else ""))


def _parse_flags(name: str, cmd: Command, args: list[str]) -> None:
  """Parses `args` into absl's flags; an unknown flag, a bad value or another command's
  flag is a UsageError."""
  try:
    extra = flags.FLAGS([f"mmrec {name}", *args])[1:]
  except flags.UnrecognizedFlagError as e:
    raise UsageError(f"unknown flag --{e.flagname}"
                     f"{cli_config.did_you_mean(e.flagname, cmd.flags)}; "
                     f"`mmrec {name} --help` lists its flags") from None
  except flags.Error as e:
    raise UsageError(f"{e}; `mmrec {name} --help` lists its flags") from None
  from absl import logging
  logging.use_absl_handler()
  if extra:
    raise UsageError(f"unexpected argument {extra[0]!r}; flags are --NAME=VALUE")
  foreign = [f.name for f in _module_flags() if f.present and f.name not in (*cmd.flags, "debug")]
  if foreign:
    raise UsageError(f"--{foreign[0]} is not a flag of `mmrec {name}` (its flags: "
                     f"{', '.join('--' + f for f in cmd.flags)})")


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(round(seconds), 60)
  return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _quiet(cmd: Command, name: str) -> Callable[[], str | None]:
  """Keep library INFO logs, TFDS progress bars and libtpu's probing (on machines without
  a TPU) out of the job's output."""

  def run():
    from absl import logging
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    if not cmd.checks_first:
      _start(distributed=name != "compile")
    return cmd.run()

  return run


_started = False


def _start(distributed: bool = True) -> None:
  """Once, before a command's real work: TFDS without progress bars and, with several
  processes (multi-host), all of them joined (`distributed`)."""
  global _started
  if _started:
    return
  _started = True
  _skip_libtpu_without_tpu()
  from mmrec import jax_cache
  jax_cache.enable()  # a second run of a command compiles nothing (mmrec/jax_cache.py)
  import tensorflow_datasets as tfds
  tfds.disable_progress_bar()
  if distributed:
    from mmrec import distributed as distributed_lib
    distributed_lib.initialize_from_env()


def _skip_libtpu_without_tpu() -> None:
  """With libtpu installed (the `tpu` extra, for `mmrec compile`), JAX probes for TPUs on
  every start and libtpu prints "could not determine TPU accelerator type" where there is
  none. Unless JAX_PLATFORMS is set, a machine with no TPU chip on its PCI bus runs on
  what it has: cuda,cpu with JAX's CUDA plugin and an NVIDIA GPU, else cpu; with another
  PJRT plugin installed, JAX chooses. `mmrec compile` is unaffected: it loads libtpu's
  topology description itself."""
  if "JAX_PLATFORMS" in os.environ:
    return
  try:
    from jax._src import hardware_utils  # JAX's own PCI check; no backend is started
  except ImportError:
    return
  if hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0:
    return
  plugins = _jax_plugins()
  cuda = {p for p in plugins if p.startswith("xla_cuda") or p.startswith("cuda")}
  if plugins - cuda:
    return
  gpu = bool(cuda) and hardware_utils.has_visible_nvidia_gpu()
  os.environ["JAX_PLATFORMS"] = "cuda,cpu" if gpu else "cpu"


def _jax_plugins() -> set[str]:
  """Names of the installed PJRT plugins, found as JAX finds them."""
  import importlib.metadata
  import pkgutil
  names = {e.name for e in importlib.metadata.entry_points(group="jax_plugins")}
  try:
    import jax_plugins
    names |= {m.name for m in pkgutil.iter_modules(jax_plugins.__path__)}
  except ImportError:
    pass
  return names


if __name__ == "__main__":
  main()
