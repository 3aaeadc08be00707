"""A seeded fault corpus for every importer layout, and the check of what an import made of it.

`write(layout, seed, root)` writes one layout's raw files: valid rows made tricky
(quotes and commas in titles, Unicode, mixed CRLF/LF line ends, a byte order
mark, blank lines, quoted line breaks, a huge field, ids written unpadded),
with each fault kind of that layout planted at known physical lines. The
returned `Corpus` says what a correct import keeps (exactly the valid rows and
items) and how it counts each fault (reason, file and line). `check(corpus,
imported)` lists every difference; `fault_summary(seeds)` runs all layouts and
gives one row per fault kind for the docs table (benchmarks/faults.py).
"""

from __future__ import annotations

import importlib.util
import pathlib
import random
import sys
import tempfile

from mmrec.data import importers
from mmrec.data.importers.drops import NUM_EXAMPLES, DataImportError


def _sibling(name: str):
  """The module `name`.py beside this file, however this file was loaded (pytest's
  importlib mode, or a script such as benchmarks/faults.py)."""
  key = f"_mmrec_fault_corpus_{name}"
  if key not in sys.modules:
    spec = importlib.util.spec_from_file_location(key, pathlib.Path(__file__).with_name(
        f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
  return sys.modules[key]


layouts = _sibling("fault_layouts")
LAYOUTS, Corpus, Fault = layouts.LAYOUTS, layouts.Corpus, layouts.Fault


def write(layout: str, seed: int, root: pathlib.Path) -> Corpus:
  """Writes `layout`'s corpus for `seed` under `root`; returns what a correct import gives."""
  rng = random.Random(f"{layout}/{seed}")
  corpus = Corpus(layout, pathlib.Path(root), importers.Options(image_size=8, max_id_chars=100,
                                                                max_text_chars=4000))
  corpus.root.mkdir(parents=True, exist_ok=True)
  layouts.WRITERS[layout](corpus, layouts.Planter(corpus, rng), rng)
  return corpus


def check(corpus: Corpus, imported) -> list[tuple[str, str, str]]:
  """Every difference between the import and the corpus: (section, reason or "", message)."""
  problems = []
  report = imported.report
  ids = [str(i) for i in imported.catalog.item_id]
  if ids != corpus.items:
    problems.append(("items", "", f"kept items {ids} != {corpus.items}"))
  for item_id, title in corpus.titles.items():
    got = str(imported.catalog.title[ids.index(item_id)]) if item_id in ids else None
    if got != title:
      problems.append(("items", "", f"item {item_id!r} title {got!r} != {title!r}"))
  rating = imported.rating if imported.rating is not None else [None] * len(imported.user)
  rows = sorted((imported.user_ids[u], ids[i], int(t), None if r is None else float(r))
                for u, i, t, r in zip(imported.user.tolist(), imported.item.tolist(),
                                      imported.timestamp.tolist(), list(rating)))
  if rows != sorted(corpus.rows):
    missing = sorted(set(corpus.rows) - set(rows))[:3]
    extra = sorted(set(rows) - set(corpus.rows))[:3]
    problems.append(("interactions", "", f"kept rows differ: missing {missing}, extra {extra}"))
  for section in ("items", "interactions", "users"):
    planted = [f for f in corpus.faults if f.section == section]
    if section not in corpus.records:
      continue
    part = report.get(section)
    if part is None:
      problems.append((section, "", f"no {section} report"))
      continue
    expected = {}
    for f in planted:
      expected.setdefault(f.reason, []).append(f.where)
    counts = {k: v for k, v in part["counts"].items() if v}
    for reason in sorted(set(expected) | set(counts)):
      n = len(expected.get(reason, []))
      if counts.get(reason, 0) != n:
        problems.append((section, reason, f"{section} {reason}: {counts.get(reason, 0)} "
                         f"counted, {n} planted"))
      lines = sorted(expected.get(reason, []), key=_line_order)[:NUM_EXAMPLES]
      if part["examples"].get(reason, []) != lines:
        problems.append((section, reason, f"{section} {reason} examples "
                         f"{part['examples'].get(reason)} != planted {lines}"))
    for name, n in corpus.records[section].items():
      got = part.get("files", {}).get(name, {"read": 0, "kept": 0, "dropped": {}})
      dropped = sum(got["dropped"].values())
      if got["read"] != n or got["read"] != got["kept"] + dropped:
        problems.append((section, "", f"{name}: read {got['read']} (kept {got['kept']} + "
                         f"dropped {dropped}), {n} records written"))
  if corpus.images:
    outcomes = {k: v for k, v in report["items"]["images"].items() if v}
    if outcomes != corpus.images:
      problems.append(("images", "", f"image outcomes {outcomes} != {corpus.images}"))
    for f in (f for f in corpus.faults if f.section == "images"):
      if f.where not in report["items"]["image_examples"].get(f.reason, []):
        problems.append(("images", f.reason, f"image {f.where} not reported as {f.reason}"))
  return problems


def _line_order(where: str) -> int:
  return int(where.rsplit(" ", 1)[1])


def run(layout: str, seed: int, root: pathlib.Path):
  """(corpus, imported, problems) for one layout and seed."""
  corpus = write(layout, seed, root)
  imported = importers.read(corpus.format, corpus.root, corpus.options)
  return corpus, imported, check(corpus, imported)


def refusals(root: pathlib.Path) -> list[tuple[str, str, str]]:
  """Faults that must stop an import, per layout: (layout, fault, the error message)."""
  out = []
  for layout in LAYOUTS:
    corpus = write(layout, 0, root / f"{layout}-refused")
    for fault, damage in layouts.REFUSALS[layout]:
      undo = damage(corpus.root)
      try:
        importers.read(corpus.format, corpus.root, corpus.options)
        message = ""
      except DataImportError as err:
        message = str(err)
      undo()
      out.append((layout, fault, message))
  return out


def fault_summary(seeds=(0, 1, 2)) -> list[dict]:
  """One row per (layout, fault kind): cases planted over `seeds`, outcome, whether every
  case was handled as it must be, and an example of the report line a user sees."""
  rows: dict[tuple[str, str], dict] = {}
  with tempfile.TemporaryDirectory() as tmp:
    for layout in LAYOUTS:
      for seed in seeds:
        corpus, imported, problems = run(layout, seed, pathlib.Path(tmp) / f"{layout}-{seed}")
        for f in corpus.faults:
          fault = f"{f.section}: {f.kind}"
          outcome = "repaired, counted" if f.reason == "oversized_text" else "counted"
          row = rows.setdefault((layout, fault), {
              "area": "importer", "layout": layout, "fault": fault, "cases": 0,
              "outcome": outcome, "ok": True, "example": ""})
          row["cases"] += 1
          bad = [p for p in problems if p[0] == f.section and p[1] in ("", f.reason)]
          row["ok"] &= not bad
          if not row["example"]:
            row["example"] = _report_line(imported.report, f)
    for layout, fault, message in refusals(pathlib.Path(tmp)):
      rows[(layout, fault)] = {"area": "importer", "layout": layout, "fault": fault,
                               "cases": 1, "outcome": "refused with message",
                               "ok": bool(message), "example": message.replace(tmp, "DIR")}
  return list(rows.values())


def _report_line(report: dict, fault: Fault) -> str:
  """The line `mmrec data import` prints for the fault's reason (build.format_report)."""
  if fault.section == "images":
    counts, named = report["items"]["images"], report["items"]["image_examples"]
    return (f"images: {fault.reason} {counts[fault.reason]} "
            f"(e.g. {', '.join(named.get(fault.reason, []))})")
  part = report[fault.section]
  examples = ", ".join(part["examples"].get(fault.reason, []))
  return f"{fault.section}: {fault.reason}: {part['counts'][fault.reason]} (e.g. {examples})"
