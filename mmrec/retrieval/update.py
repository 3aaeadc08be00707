"""Adds items to and removes items from an existing bundle, without retraining.

The searcher is updated in place with ScaNN's own update API (`upsert`,
`delete`), which keeps the trained partitions and quantizers, while the
changes since the last full build stay under 10% of the items it was built
with; if the measured Recall@10 falls below the target, the search parameters
are re-tuned. Otherwise (or if re-tuning cannot reach the target) it is rebuilt
and tuned from the catalog. Either way the manifest's `version` increases
and the new bundle replaces the old one atomically. numpy and scann only; the
item tower's embedding of new items lives in `mmrec.retrieval.new_items`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmrec.retrieval import export, tuning
from mmrec.serving.bundle import Bundle, load_bundle
from mmrec.serving.explain import explain_files

REBUILD_CHANGE_SHARE = 0.1  # rebuild once this share of the built items has changed
_UPSERT_BATCH = 256


def add_items(bundle_dir: str | os.PathLike, embeddings: np.ndarray, item_ids: Sequence[str], *,
              popularity: np.ndarray | None = None,
              metadata: dict[str, list] | None = None) -> dict[str, Any]:
  """Appends items to the bundle at `bundle_dir`; they are retrievable at once.

  Args:
    embeddings: float `[M, D]` item-tower embeddings of the new items.
    item_ids: `M` new ids, none of them already in the bundle.
    popularity: training counts `[M]`; default 0 (new items have no history).
    metadata: per-item lists `[M]` for the bundle's metadata columns; a column
      left out is filled with "" (counted in the report). A column the bundle
      does not have is refused.

  Returns:
    A report: path, version, added, index ("incremental" or "rebuild"),
    recall_at_10, metadata_filled.
  """
  bundle = load_bundle(bundle_dir, verify_checksums=True)  # an update deploys: hash first
  m = len(item_ids) if not isinstance(item_ids, str) else -1
  if m < 1:
    raise ValueError("add_items: item_ids must be a non-empty list of ids")
  popularity = np.zeros(m, np.int64) if popularity is None else popularity
  emb, ids, pop = export._validate(embeddings, np.asarray(item_ids), popularity)
  if emb.shape[1] != bundle.dimension:
    raise ValueError(f"add_items: embeddings have dimension {emb.shape[1]}, the bundle "
                     f"{bundle.path} has {bundle.dimension}")
  present = ids[bundle.rows(ids.tolist()) >= 0].tolist()
  if present:
    raise ValueError(f"add_items: {len(present)} ids are already in the bundle, e.g. "
                     f"{present[:3]}; remove them first to replace them")
  new_meta, filled = _merged_metadata(bundle, metadata, m)
  all_emb = np.concatenate([bundle.embeddings, emb])
  all_ids = np.concatenate([bundle.item_ids, ids])
  all_pop = np.concatenate([bundle.popularity, pop])

  def incremental(searcher):
    searcher.searcher.upsert([None] * m, emb, _UPSERT_BATCH)

  return _write(bundle_dir, bundle, all_emb, all_ids, all_pop, new_meta, incremental,
                {"action": "add", "count": m}, filled)


def remove_items(bundle_dir: str | os.PathLike, item_ids: Sequence[str], *,
                 ignore_missing: bool = False) -> dict[str, Any]:
  """Removes items from the bundle at `bundle_dir`; they are never returned again.

  Unknown ids raise ValueError unless `ignore_missing` (then they are counted
  in the report's `missing`). Returns the report as `add_items` does.
  """
  bundle = load_bundle(bundle_dir, verify_checksums=True)  # an update deploys: hash first
  if isinstance(item_ids, str):
    raise ValueError("remove_items: item_ids must be a list of ids, not one id")
  wanted = list(dict.fromkeys(item_ids))
  known = bundle.rows(wanted) >= 0
  missing = [i for i, k in zip(wanted, known) if not k]
  if missing and not ignore_missing:
    raise ValueError(f"remove_items: {len(missing)} ids are not in the bundle {bundle.path}, "
                     f"e.g. {missing[:3]}")
  wanted = [i for i, k in zip(wanted, known) if k]
  if not wanted:
    raise ValueError("remove_items: nothing to remove")
  if len(wanted) >= bundle.num_items:
    raise ValueError("remove_items: a bundle must keep at least one item")
  # Mirror ScaNN's delete: the last datapoint moves into the freed row.
  order = np.arange(bundle.num_items)
  row_of = {i: r for r, i in enumerate(bundle.item_ids.tolist())}
  deleted_rows = []
  size = bundle.num_items
  for item in wanted:
    row = row_of.pop(item)
    last = size - 1
    deleted_rows.append(row)
    if row != last:
      order[row] = order[last]
      row_of[str(bundle.item_ids[order[row]])] = row
    size -= 1
  keep = order[:size]
  meta = {k: [v[i] for i in keep] for k, v in bundle.metadata.items()} if bundle.metadata else None

  def incremental(searcher):
    for row in deleted_rows:
      searcher.searcher.delete([row])

  report = _write(bundle_dir, bundle, bundle.embeddings[keep], bundle.item_ids[keep],
                  bundle.popularity[keep],
                  meta, incremental, {"action": "remove", "count": len(wanted)}, 0)
  report["missing"] = len(missing)
  return report


def _merged_metadata(bundle: Bundle, metadata, m):
  metadata = metadata or {}
  unknown = sorted(set(metadata) - set(bundle.metadata))
  if unknown:
    raise ValueError(f"add_items: metadata columns {unknown} are not in the bundle "
                     f"(columns: {sorted(bundle.metadata)})")
  if not bundle.metadata:
    return None, 0
  out, filled = {}, 0
  for key, values in bundle.metadata.items():
    new = metadata.get(key)
    if new is None:
      new, filled = [""] * m, filled + m
    new = new.tolist() if isinstance(new, np.ndarray) else list(new)
    if len(new) != m:
      raise ValueError(f"add_items: metadata[{key!r}] has {len(new)} entries, expected {m}")
    out[key] = values + new
  return out, filled


def _write(bundle_dir, bundle: Bundle, emb, ids, pop, meta, incremental, change,
           filled) -> dict[str, Any]:
  manifest = bundle.manifest
  params = dict(manifest["scann"])
  requested = params.pop("mode_requested", "auto")
  built_n = params.pop("built_num_items", bundle.num_items)
  changed = params.pop("changed_since_build", 0) + change["count"]
  wanted_mode = tuning.scann_params(len(emb), emb.shape[1], requested)["mode"]
  queries = tuning.held_out_queries(emb, seed=manifest["version"])
  how = "incremental"
  if changed <= REBUILD_CHANGE_SHARE * built_n and wanted_mode == params["mode"]:
    searcher = bundle.searcher
    incremental(searcher)
    target = manifest["recall"]["target"]
    measured = tuning.measure(searcher, params, emb, queries)
    if measured < target:  # re-tune the search parameters before resorting to a rebuild
      params, measured = tuning.tune(searcher, params, emb, queries, target)
    if measured < target:
      how = "rebuild"
  else:
    how = "rebuild"
  recall = dict(manifest["recall"])
  if how == "rebuild":
    searcher, params, recall = tuning.configure(emb, requested, target=recall["target"],
                                                seed=manifest["version"])
    built_n, changed = len(emb), 0
  else:
    recall = tuning.recall_report(measured, recall["target"], len(queries), "perturbed_items",
                                  estimate=True)  # made-up queries: an estimate only
  params.update(mode_requested=requested, built_num_items=built_n, changed_since_build=changed)
  version = manifest["version"] + 1
  now = export._now()
  extra_files = {}
  if "user_tower" in manifest:  # carried over: it keys items by id, not by bundle row
    tower = manifest["user_tower"]
    for name in (tower["file"], tower.get("items_file")):
      if name:
        extra_files[name] = (bundle.path / name).read_bytes()
  for name in explain_files(manifest):  # keyed by the model's items too
    extra_files[name] = (bundle.path / name).read_bytes()
  fields = {k: manifest[k] for k in ("created_at", "model", "user_tower", "explain")
            if k in manifest}
  fields.update(version=version, updated_at=now, scann=params, recall=recall,
                history=[*manifest["history"], {"version": version, "at": now, **change,
                                                "num_items": len(emb), "index": how}])
  path = export.write_bundle(pathlib.Path(bundle_dir).absolute(), emb, ids, pop, meta, searcher,
                             fields, extra_files)
  done = {"add": "added", "remove": "removed"}[change["action"]]
  return {"path": str(path), "version": version, done: change["count"],
          "num_items": len(emb), "index": how, "recall_at_10": recall["recall_at_10"],
          "metadata_filled": filled}
