"""`mmrec data build` and `mmrec data import`."""

from __future__ import annotations

import pathlib
import sys

from mmrec.cli import config as config_lib
from mmrec.cli.config import UsageError
from mmrec.cli.registry import COLUMNS, CONFIG, FORMAT, PATH, WORKDIR, command
from mmrec.cli.start import start


@command("data build", example="mmrec data build --config two_tower:tiny --workdir runs/tiny")
def _data_build():
  """Generate the configured dataset and store it as TFDS ArrayRecord datasets."""
  from mmrec import jobs
  from mmrec.data.clean import format_report
  from mmrec.data.dataset import load_dataset
  path = jobs.build_data(CONFIG.value, WORKDIR.value)
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
  config = CONFIG.value
  imp = config.data.import_
  config.data.source = "import"
  imp.format = FORMAT.value or imp.format
  imp.path = PATH.value or imp.path
  if imp.format not in FORMATS:
    raise UsageError(f"unknown format {imp.format!r}{config_lib.did_you_mean(imp.format, FORMATS)}"
                     f"; give one of {', '.join(FORMATS)}: mmrec data import FORMAT --path DIR")
  if not imp.path or not pathlib.Path(imp.path).exists():
    raise UsageError(f"--path {imp.path or '(none)'}: give the directory of the raw "
                     f"{imp.format} files")
  for pair in (COLUMNS.value or "").split(","):
    role, sep, column = pair.partition("=")
    if pair.strip() and (not sep or role.strip() not in imp.columns):
      raise UsageError(f"--columns {pair!r}: expected ROLE=NAME with ROLE in "
                       f"{sorted(imp.columns)}{config_lib.did_you_mean(role.strip(), imp.columns)}")
    if pair.strip():
      imp.columns[role.strip()] = column.strip()
  start()
  # As mmrec.data.sources.dataset_path, without importing the model-side modules (faster).
  data_dir = config.data.data_dir or pathlib.Path(WORKDIR.value) / "data"
  try:
    path = import_dataset(config.data, data_dir)
  except DataImportError as e:
    sys.exit(f"mmrec data import: {e}")
  print(format_report(json.loads((path / REPORT_FILE).read_text())))
  print(f"built {path}")
  return f"dataset in {path}"
