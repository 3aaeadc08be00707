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
_BUNDLE = flags.DEFINE_string("bundle", None, "Output bundle directory for `export` "
                              "(default WORKDIR/bundle).")


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


def _train():
  """Train the two-tower model (resumes from WORKDIR/checkpoints)."""
  from mmrec import train
  trained = train.train(_CONFIG.value, _WORKDIR.value)
  print(f"trained to step {trained.step}; checkpoints in {_WORKDIR.value}/checkpoints")


def _run_config():
  """The config a trained workdir was made with, unless --config is given explicitly."""
  import json
  import ml_collections
  saved = pathlib.Path(_WORKDIR.value) / "config.json"
  if flags.FLAGS["config"].present or not saved.exists():
    return _CONFIG.value
  return ml_collections.ConfigDict(json.loads(saved.read_text()))


def _evaluate():
  """Full-ranking evaluation of WORKDIR's latest checkpoint; writes WORKDIR/metrics.json."""
  from mmrec import jobs, train
  from mmrec.evaluation.evaluate import format_table
  config = _run_config()
  trained = train.restore(_WORKDIR.value, config)
  rows = {config.name: jobs.evaluate(trained, config, _WORKDIR.value),
          "popularity": jobs.evaluate_popularity(config, _WORKDIR.value)}
  print(format_table(rows))


def _export():
  """Export WORKDIR's item embeddings as a ScaNN bundle (docs/bundle.md)."""
  from mmrec import jobs, train
  config = _run_config()
  trained = train.restore(_WORKDIR.value, config)
  out = jobs.export(trained, config, _BUNDLE.value or pathlib.Path(_WORKDIR.value) / "bundle")
  print(f"exported {out}")


def _demo():
  """Build the shop, train multimodal and ID-only two-towers, evaluate, export, query."""
  from mmrec import demo
  demo.run(_CONFIG.value, _WORKDIR.value)


COMMANDS = {
    "data build": _data_build,
    "train": _train,
    "evaluate": _evaluate,
    "export": _export,
    "demo": _demo,
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
  if {"-h", "--help"} & set(rest):
    print(f"mmrec {name}: {COMMANDS[name].__doc__}\n")
    print(flags.FLAGS.module_help(__name__))
    return
  app.run(lambda _: _quiet(COMMANDS[name])(), argv=[f"mmrec {name}", *rest])


def _quiet(command):
  """Keep library INFO logs and TFDS progress bars out of the job's output."""

  def run():
    import tensorflow_datasets as tfds
    from absl import logging
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    tfds.disable_progress_bar()
    command()

  return run


if __name__ == "__main__":
  main()
