"""The `mmrec` command line: `mmrec COMMAND [--config FILE[:ARG]] [--workdir DIR] [--config.a.b=V]`."""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

DEFAULT_CONFIG = str(pathlib.Path(__file__).parent / "configs" / "two_tower.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", f"{DEFAULT_CONFIG}:small",
    "Python config file with an optional ':arg' for get_config; override fields with "
    "--config.train.steps=100 and the like. Default: the two-tower config on the small shop.")
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


def _data_import():
  """Import raw files (`mmrec data import FORMAT --path DIR`), clean them, print the data report."""
  import json
  from mmrec.data.importers import DataImportError
  from mmrec.data.importers.build import REPORT_FILE, format_report, import_dataset
  config = _CONFIG.value
  imp = config.data.import_
  config.data.source = "import"
  imp.format = _FORMAT.value or imp.format
  imp.path = _PATH.value or imp.path
  for pair in (_COLUMNS.value or "").split(","):
    role, sep, column = pair.partition("=")
    if pair.strip() and (not sep or role.strip() not in imp.columns):
      sys.exit(f"mmrec data import: --columns {pair!r}: expected ROLE=NAME with ROLE in "
               f"{sorted(imp.columns)}")
    if pair.strip():
      imp.columns[role.strip()] = column.strip()
  # As mmrec.data.sources.dataset_path, without importing the model-side modules (faster).
  data_dir = config.data.data_dir or pathlib.Path(_WORKDIR.value) / "data"
  try:
    path = import_dataset(config.data, data_dir)
  except DataImportError as e:
    sys.exit(f"mmrec data import: {e}")
  print(format_report(json.loads((path / REPORT_FILE).read_text())))
  print(f"built {path}")


def _train():
  """Train the two-tower model (resumes from WORKDIR/checkpoints)."""
  from mmrec import jobs
  trained = jobs.train(_CONFIG.value, _WORKDIR.value)
  print(f"trained to step {trained.step}; checkpoints in {_WORKDIR.value}/checkpoints")


# Overrides that leave the trained model as it is (fields, or whole sections), applied on
# top of WORKDIR/config.json by evaluate, export and recommend.
RUN_OVERRIDES = ("eval", "mesh", "name", "data.data_dir")
_MISSING = object()


def _run_config(command: str):
  """The config a trained workdir was made with (WORKDIR/config.json), unless --config is
  given explicitly. Its --config.FIELD overrides apply when RUN_OVERRIDES allows them; any
  other must repeat the trained value, else the command stops naming it."""
  import json
  import ml_collections
  saved = pathlib.Path(_WORKDIR.value) / "config.json"
  if flags.FLAGS["config"].present or not saved.exists():
    return _CONFIG.value
  config = _tuples(json.loads(saved.read_text()))
  for field, value in config_flags.get_override_values(flags.FLAGS["config"]).items():
    *parents, name = field.split(".")
    node = config
    for key in parents:
      node = node.setdefault(key, {})
    has = node.get(name, _MISSING)
    if any(field == p or field.startswith(f"{p}.") for p in RUN_OVERRIDES):
      node[name] = value
    elif has != json.loads(json.dumps(value)):
      text = "no such field" if has is _MISSING else json.dumps(has)
      sys.exit(f"mmrec {command}: --config.{field}={value} contradicts the model trained in "
               f"{_WORKDIR.value} (config.json has {text}); retrain or drop the override")
  return ml_collections.ConfigDict(config)


def _tuples(value):
  """JSON lists back to the config's tuples (config.json cannot tell them apart)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _evaluate():
  """Full-ranking evaluation of WORKDIR's latest checkpoint; writes WORKDIR/metrics.json."""
  from mmrec import jobs, train
  from mmrec.evaluation.evaluate import format_table
  config = _run_config("evaluate")
  trained = train.restore(_WORKDIR.value, config)
  rows = {config.name: jobs.evaluate(trained, config, _WORKDIR.value),
          "popularity": jobs.evaluate_popularity(config, _WORKDIR.value)}
  print(format_table(rows))


def _export():
  """Export WORKDIR's items as a ScaNN bundle; --add-items/--remove-items update it (docs/bundle.md)."""
  from mmrec import jobs, train
  config = _run_config("export")
  bundle = _BUNDLE.value or pathlib.Path(_WORKDIR.value) / "bundle"
  if _ADD_ITEMS.value or _REMOVE_ITEMS.value:  # update the existing bundle in place
    remove = _REMOVE_ITEMS.value or ""
    if remove.startswith("@"):
      remove = pathlib.Path(remove[1:]).read_text(encoding="utf-8").replace("\n", ",")
    remove_ids = [i.strip() for i in remove.split(",") if i.strip()]
    trained = train.restore(_WORKDIR.value, config) if _ADD_ITEMS.value else None
    try:
      reports = jobs.update_bundle(trained, config, bundle, add_feed=_ADD_ITEMS.value,
                                   remove_ids=remove_ids)
    except ValueError as e:
      sys.exit(f"mmrec export: {e}")
    for report in reports:
      print(" ".join(f"{k}={v}" for k, v in report.items()))
    return
  trained = train.restore(_WORKDIR.value, config)
  out = jobs.export(trained, config, bundle)
  print(f"exported {out}")


def _recommend():
  """Write each user's top-K unseen items to --out (.csv or .parquet), in original ids."""
  from mmrec import jobs, train
  config = _run_config("recommend")
  if not _OUT.value or pathlib.Path(_OUT.value).suffix not in (".csv", ".parquet"):
    sys.exit("mmrec recommend: --out FILE.csv or FILE.parquet is required")
  if _K.value < 1:
    sys.exit(f"mmrec recommend: --k={_K.value} must be at least 1")
  users = None
  if _USERS.value:  # one id a line
    try:
      lines = pathlib.Path(_USERS.value).read_text(encoding="utf-8").splitlines()
    except OSError as e:
      sys.exit(f"mmrec recommend: --users: {e}")
    users = [line.strip() for line in lines if line.strip()]
  trained = train.restore(_WORKDIR.value, config)
  try:
    n = jobs.recommend(trained, config, _WORKDIR.value, _OUT.value, k=_K.value,
                       split=_SPLIT.value, users=users, beta=_BETA.value)
  except ValueError as e:
    sys.exit(f"mmrec recommend: {e}")
  print(f"wrote {n} recommendations to {_OUT.value}")


def _demo():
  """Build the shop, train multimodal and ID-only two-towers, evaluate, export, query."""
  from mmrec import demo
  demo.run(_CONFIG.value, _WORKDIR.value)


def _serve():
  """Serve a bundle over HTTP (numpy + scann, no jax): /v1/recommend, /v1/similar, /healthz."""
  from mmrec.serving import BundleError, server
  try:
    bundle = _BUNDLE.value or pathlib.Path(_WORKDIR.value) / "bundle"
    server.serve(bundle, _HOST.value, _PORT.value)
  except BundleError as e:
    sys.exit(f"mmrec serve: {e}")


def _compile():
  """Compile the train step ahead of time for the config's TPU topology (a CPU is enough)."""
  import jax
  jax.config.update("jax_platforms", "cpu")  # the TPU devices come from libtpu's topology
  from mmrec import compile as aot
  config = _CONFIG.value
  if "tpu" not in config:
    raise app.UsageError("`mmrec compile` needs a TPU config with a `tpu` block, e.g. "
                         "--config tpu_configs/v5e_16.py")
  _, report = aot.compile_train_step(config, config_flags.get_config_filename(flags.FLAGS["config"]))
  print("\n".join(report.lines()))


def _pretrain():
  """Self-supervised pretraining of the item encoders (mmrec/configs/pretrain.py), then a
  linear probe of item attributes; writes WORKDIR/probe.json."""
  import json
  from mmrec import pretrain
  from mmrec.evaluation.probe import format_probe
  run = pretrain.pretrain(_CONFIG.value, _WORKDIR.value)
  print(f"pretrained to step {run.step}; checkpoints in {_WORKDIR.value}/checkpoints")
  rows = pretrain.probe(_CONFIG.value, run)
  (pathlib.Path(_WORKDIR.value) / "probe.json").write_text(json.dumps(rows, indent=2) + "\n")
  print(format_probe(rows))


COMMANDS = {
    "data build": _data_build,
    "data import": _data_import,
    "pretrain": _pretrain,
    "train": _train,
    "evaluate": _evaluate,
    "export": _export,
    "recommend": _recommend,
    "demo": _demo,
    "serve": _serve,
    "compile": _compile,
}


def _usage() -> str:
  lines = ["usage: mmrec COMMAND [--config FILE[:ARG]] [--workdir DIR] [--config.FIELD=VALUE ...]",
           "", "commands:"]
  lines += [f"  {name:<12} {fn.__doc__.splitlines()[0]}" for name, fn in COMMANDS.items()]
  lines += ["", "`mmrec COMMAND --help` lists the flags."]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  words = argv[1:3]
  name = next((n for n in COMMANDS if n.split() == words[:len(n.split())]), None)
  if name is None:
    print(_usage(), file=sys.stderr if argv[1:2] not in (["-h"], ["--help"]) else sys.stdout)
    sys.exit(0 if argv[1:2] in (["-h"], ["--help"]) else 2)
  rest = argv[1 + len(name.split()):]
  if name == "data import" and rest and not rest[0].startswith("-"):
    rest = [f"--format={rest[0]}", *rest[1:]]  # `mmrec data import FORMAT --path DIR`
  if {"-h", "--help"} & set(rest):
    print(f"mmrec {name}: {COMMANDS[name].__doc__}\n")
    print(flags.FLAGS.module_help(__name__))
    return
  # `serve` needs neither jax nor tensorflow_datasets, so it skips _quiet's TFDS import.
  command = COMMANDS[name] if name == "serve" else _quiet(COMMANDS[name])
  app.run(lambda _: command(), argv=[f"mmrec {name}", *rest])


def _quiet(command):
  """Keep library INFO logs and TFDS progress bars out of the job's output."""

  def run():
    import tensorflow_datasets as tfds
    from absl import logging
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    tfds.disable_progress_bar()
    if command is not _compile:  # several processes (multi-host): join them first
      from mmrec import distributed
      distributed.initialize_from_env()
    command()

  return run


if __name__ == "__main__":
  main()
