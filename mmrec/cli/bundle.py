"""`mmrec export` (and its in-place updates), `mmrec serve` and `mmrec bundle verify`."""

from __future__ import annotations

import pathlib
import sys

from mmrec.cli.common import check_trained, run_config
from mmrec.cli.config import UsageError
from mmrec.cli.registry import (ADD_ITEMS, BUNDLE, HOST, PORT, REMOVE_ITEMS, WORKDIR,
                                command)
from mmrec.cli.start import start


@command("export", uses=("config", "workdir", "bundle", "add-items", "remove-items"),
         checks_first=True,
         example="mmrec export --workdir runs/x   # or --add-items new.jsonl, --remove-items "
         "SKU-1,SKU-7")
def _export():
  """Export WORKDIR's items as a ScaNN bundle; --add-items/--remove-items update it
  (docs/bundle.md)."""
  workdir = pathlib.Path(WORKDIR.value)
  bundle = pathlib.Path(BUNDLE.value or workdir / "bundle")
  if ADD_ITEMS.value or REMOVE_ITEMS.value:  # update the existing bundle in place
    if ADD_ITEMS.value:  # the whole feed is checked before anything else
      from mmrec.retrieval import new_items
      try:
        new_items.read_feed(ADD_ITEMS.value)
      except ValueError as e:
        raise UsageError(f"--add-items: {e}") from e
    if not (bundle / "manifest.json").is_file():
      raise UsageError(f"no bundle in {bundle} to update; export one first: "
                       f"mmrec export --workdir {workdir}")
    remove = REMOVE_ITEMS.value or ""
    if remove.startswith("@"):
      try:
        remove = pathlib.Path(remove[1:]).read_text(encoding="utf-8").replace("\n", ",")
      except OSError as e:
        raise UsageError(f"--remove-items {REMOVE_ITEMS.value}: {e.strerror}: {e.filename}")
    remove_ids = [i.strip() for i in remove.split(",") if i.strip()]
    trained, config = None, None
    if ADD_ITEMS.value:
      check_trained()
      config = run_config()
      start()
      from mmrec.training import two_tower as train_lib
      trained = train_lib.restore(workdir, config)
    start()
    from mmrec import jobs
    try:
      reports = jobs.update_bundle(trained, config, bundle, add_feed=ADD_ITEMS.value,
                                   remove_ids=remove_ids)
    except ValueError as e:
      raise UsageError(str(e)) from e
    for report in reports:
      print(" ".join(f"{k}={v}" for k, v in report.items()))
    return f"bundle {bundle} updated"
  check_trained()
  config = run_config()
  start()
  from mmrec import jobs
  from mmrec.training import two_tower as train_lib
  trained = train_lib.restore(workdir, config)
  out = jobs.export(trained, config, bundle)
  print(f"exported {out}")
  return f"bundle in {out}"


@command("serve", uses=("workdir", "bundle", "host", "port"),
         example="mmrec serve --bundle runs/x/bundle --port 8000   # API docs at /docs")
def _serve():
  """Serve a bundle over HTTP (numpy + scann, no jax): /v1/recommend, /v1/similar, /healthz,
  /metrics, and the API's docs at /docs."""
  from mmrec.serving import server  # its BundleError is reported as a user error
  bundle = BUNDLE.value or pathlib.Path(WORKDIR.value) / "bundle"
  server.serve(bundle, HOST.value, PORT.value)


@command("bundle verify", uses=("bundle",),
         example="mmrec bundle verify runs/x/bundle   # exit status 1 if anything is wrong")
def _bundle_verify():
  """Verify a bundle: every file's SHA-256, the manifest's fields, the arrays and ids."""
  from mmrec.serving import BundleError, verify  # numpy + scann only
  if not BUNDLE.value:
    raise UsageError("give the bundle directory: mmrec bundle verify BUNDLE_DIR")
  try:
    print(verify.summary_line(verify.verify_bundle(BUNDLE.value)))
  except BundleError as e:
    sys.exit(f"mmrec bundle verify: {e}")
