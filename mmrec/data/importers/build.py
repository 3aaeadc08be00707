"""Imported raw files -> cleaned tables -> a TFDS dataset directory with its data report.

`import_dataset(data_cfg, data_dir)` runs the importer named by
`data_cfg.import_.format`, the cleaning steps of `data_cfg.clean`
(`mmrec.data.clean.clean_interactions`), remaps users and items to contiguous
indices and writes the dataset with `mmrec.data.dataset.build_dataset`, plus
`user_ids.json` (user index -> original id; item ids are in the catalog) and
`report.json` (also under "import" in meta.json).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any

import numpy as np

from mmrec.data import clean as clean_lib
from mmrec.data import dataset as dataset_lib
from mmrec.data import importers
from mmrec.data import split as split_lib
from mmrec.data.importers.base import Imported, Options
from mmrec.data.importers.drops import REPAIRED, DataImportError
from mmrec.data.importers.images import OUTCOMES
from mmrec.data.schema import Catalog, Interactions
from mmrec.data.stats import long_tail_stats

USER_IDS_FILE = "user_ids.json"
REPORT_FILE = "report.json"


def dataset_name(data_cfg) -> str:
  """`data.import_.name`, else FORMAT_<directory name> (characters outside [A-Za-z0-9_.-] -> _)."""
  imp = data_cfg.import_
  if imp.name:
    return imp.name
  if not imp.format or not imp.path:
    raise DataImportError("data.source='import' needs data.import_.format and data.import_.path "
                          "(mmrec data import FORMAT --path DIR)")
  base = pathlib.Path(imp.path).expanduser().resolve().name or "data"
  return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{imp.format}_{base}")


def import_config(data_cfg) -> dict[str, Any]:
  """The options an imported dataset depends on (stored in its report)."""
  imp = data_cfg.import_.to_dict()
  imp.pop("workers", None)  # Threads do not change the data.
  imp["path"] = str(pathlib.Path(imp["path"]).expanduser().resolve()) if imp["path"] else ""
  return {"import_": imp, "clean": data_cfg.clean.to_dict(),
          "image_size": int(data_cfg.image_size), "protocol": data_cfg.protocol,
          "split": split_lib.options_for(data_cfg.protocol, data_cfg.get("split")),
          "seed": int(data_cfg.seed)}


def import_dataset(data_cfg, data_dir: str | pathlib.Path,
                   name: str | None = None) -> pathlib.Path:
  """Reads, cleans and writes the configured import; returns the dataset directory."""
  imp = data_cfg.import_
  imported = importers.read(imp.format, imp.path, Options.from_config(data_cfg))
  catalog, interactions, user_ids, report, given = clean_with_split(imported, data_cfg.clean)
  report["config"] = import_config(data_cfg)
  text = json.dumps(report, indent=2) + "\n"
  return dataset_lib.build_dataset(
      data_dir, name or dataset_name(data_cfg), catalog, interactions, seed=data_cfg.seed,
      protocol=data_cfg.protocol, vocab_size=data_cfg.vocab_size, num_users=len(user_ids),
      split_options=split_lib.options_for(data_cfg.protocol, data_cfg.get("split")),
      extra_meta={"source": "import", "import": report}, given_split=given,
      extra_files={USER_IDS_FILE: json.dumps(user_ids) + "\n", REPORT_FILE: text})


def clean(imported: Imported, clean_cfg) -> tuple[Catalog, Interactions, list[str], dict]:
  """Cleaning steps, then users and items remapped to contiguous indices.

  Returns (catalog, interactions, user_ids, report); the report is the
  importer's plus `steps` and `final` (see docs/data.md).
  """
  return clean_with_split(imported, clean_cfg)[:4]


def clean_with_split(imported: Imported, clean_cfg
                     ) -> tuple[Catalog, Interactions, list[str], dict, np.ndarray | None]:
  """`clean`, plus the given split of each kept row (`Imported.split`; None without one).

  Cleaning drops rows across all splits alike and never moves a row to another split.
  """
  n = len(imported.catalog)
  keep, items_kept, steps = clean_lib.clean_interactions(
      imported.user, imported.item, imported.timestamp, imported.rating, n,
      dedupe=clean_cfg.dedupe, rating_threshold=float(clean_cfg.rating_threshold),
      user_core=int(clean_cfg.user_core), item_core=int(clean_cfg.item_core))
  user, item, timestamp = imported.user[keep], imported.item[keep], imported.timestamp[keep]
  users, user = np.unique(user, return_inverse=True)  # Kept users, first-appearance order.
  item_index = np.flatnonzero(items_kept)
  new_item = np.full(n, -1, np.int64)
  new_item[item_index] = np.arange(len(item_index))
  catalog = take_items(imported.catalog, item_index)
  interactions = Interactions(user, new_item[item], timestamp)
  user_ids = [imported.user_ids[u] for u in users.tolist()]
  import_step = {"step": "import", "users": len(imported.user_ids), "items": n,
                 "interactions": len(imported.user),
                 "dropped": imported.report["interactions"]["counts"],
                 "items_dropped": {k: v for k, v in imported.report["items"]["counts"].items()
                                   if k != "oversized_text"}}
  report = dict(imported.report, steps=[import_step, *steps],
                final=final_report(catalog, interactions, len(user_ids),
                                   imported.image_outcome[item_index]))
  given = None if imported.split is None else imported.split[keep]
  return catalog, interactions, user_ids, report, given


def take_items(catalog: Catalog, index: np.ndarray) -> Catalog:
  """The catalog restricted to items `index` (in that order)."""
  take = lambda a: np.asarray(a)[index]
  return dataclasses.replace(
      catalog, item_id=take(catalog.item_id), title=take(catalog.title),
      description=take(catalog.description), category=take(catalog.category),
      image=[catalog.image[i] for i in index.tolist()],
      attributes={k: take(v) for k, v in catalog.attributes.items()})


def final_report(catalog: Catalog, interactions: Interactions, num_users: int,
                 image_outcome: np.ndarray) -> dict[str, Any]:
  """Sizes, density, long tail of item counts, items with image (and why not) / with text."""
  n, m = len(catalog), len(interactions)
  counts = np.bincount(interactions.item, minlength=n)
  has_text = sum(bool(str(t).strip() or str(d).strip())
                 for t, d in zip(catalog.title, catalog.description))
  outcome = np.bincount(np.asarray(image_outcome, np.int64), minlength=len(OUTCOMES))
  return {"users": num_users, "items": n, "interactions": m,
          "density": m / (num_users * n) if num_users and n else 0.0,
          "long_tail": long_tail_stats(counts) if n else {},
          "items_with_image": int(outcome[OUTCOMES.index("ok")]),
          "items_without_image": {k: int(outcome[i]) for i, k in enumerate(OUTCOMES) if k != "ok"},
          "items_with_text": int(has_text)}


def load_user_ids(path: str | pathlib.Path) -> list[str] | None:
  """Original user ids by user index, for an imported dataset (None for the embedded shop)."""
  file = pathlib.Path(path) / USER_IDS_FILE
  return json.loads(file.read_text()) if file.exists() else None


def format_report(report: dict[str, Any]) -> str:
  """The data report as console lines."""
  lines = [f"import {report['format']} from {report['path']}"]
  for part in ("items", "users", "interactions"):
    if part not in report:  # users: only with a user file
      continue
    r = report[part]
    lines.append(f"  {part}: {r['kept']} of {r['read']} rows kept")
    for reason, count in r["counts"].items():
      if count:
        examples = ", ".join(r["examples"].get(reason, []))
        repaired = "repaired, kept; " if reason in REPAIRED else ""
        lines.append(f"    {reason}: {count}" + (f" ({repaired}e.g. {examples})" if examples
                                                  else ""))
  images = report["items"]["images"]
  named = "; ".join(f"{k}: {', '.join(v)}" for k, v in report["items"]["image_examples"].items())
  lines.append("  images: " + ", ".join(f"{k} {v}" for k, v in images.items())
               + (f" (e.g. {named})" if named else ""))
  lines.append(f"  {'step':<18}{'users':>10}{'items':>10}{'interactions':>14}{'dropped':>10}")
  for step in report["steps"]:
    after = step.get("after", step)
    dropped = step.get("dropped", 0)
    dropped = sum(dropped.values()) if isinstance(dropped, dict) else dropped
    lines.append(f"  {step['step']:<18}{after['users']:>10}{after['items']:>10}"
                 f"{after['interactions']:>14}{dropped:>10}")
  f = report["final"]
  tail = f["long_tail"]
  lines.append(f"  final: {f['users']} users, {f['items']} items, {f['interactions']} "
               f"interactions, density {f['density']:.5f}")
  if tail:
    lines.append(f"  long tail: top-20% items hold {tail['top20_share']:.1%} of interactions, "
                 f"Gini {tail['gini']:.3f}")
  lines.append(f"  items with image {f['items_with_image']} (without: "
               + ", ".join(f"{k} {v}" for k, v in f["items_without_image"].items())
               + f"), with text {f['items_with_text']}")
  return "\n".join(lines)


def check_import_config(meta: dict[str, Any], data_cfg, path) -> None:
  """Raises when the dataset at `path` was imported with other options than `data_cfg`."""
  stored = meta.get("import", {}).get("config")
  wanted = json.loads(json.dumps(import_config(data_cfg)))
  if stored == wanted:
    return
  diff = sorted(_differences(stored or {}, wanted))
  raise DataImportError(f"{path} was imported with other options ({', '.join(diff[:6])}); "
                        "re-import it (mmrec data import with the same --config overrides) "
                        "or set another data.import_.name")


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
  out = []
  for key in sorted(set(a) | set(b)):
    x, y = a.get(key), b.get(key)
    if isinstance(x, dict) and isinstance(y, dict):
      out += _differences(x, y, f"{prefix}{key}.")
    elif x != y:
      out.append(f"{prefix}{key}: {x!r} on disk, {y!r} configured")
  return out
