"""Fault injection: every fault kind the tests plant, with its outcome, as one table.

Each area's test-side module (the same generators and checks `make test` runs) has a
`fault_summary()` that plants its faults and returns one row per kind:
{"area", "fault", "cases", "outcome" (counted | recovered | refused with message),
"ok", "example" (what the user sees)}. This script gathers them and writes
benchmarks/results/faults.{json,md}.

  python benchmarks/faults.py
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import platform
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SOURCES = {  # area -> the test-side module that plants and checks its faults
    "importer": "tests/data/importers/fault_corpus.py",
    "checkpoint": "tests/training/checkpoint_faults_lib.py",
    "bundle": "tests/serving/tamper.py",
}


def _module(relative: str):
  path = ROOT / relative
  sys.path.insert(0, str(path.parent))
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up while it runs
  spec.loader.exec_module(module)
  return module


def _cell(text) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[dict]) -> str:
  lines = ["| area | fault | cases | outcome | as expected | what the user sees |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    fault = f"{r['layout']}: {r['fault']}" if r.get("layout") else r["fault"]
    lines.append(f"| {r['area']} | {_cell(fault)} | {r['cases']} | {r['outcome']} | "
                 f"{'yes' if r['ok'] else '**no**'} | {_cell(r.get('example', ''))[:160]} |")
  return "\n".join(lines) + "\n"


def main() -> None:
  rows, seconds = [], {}
  for area, relative in SOURCES.items():
    start = time.perf_counter()
    rows += _module(relative).fault_summary()
    seconds[area] = round(time.perf_counter() - start, 1)
    print(f"{area}: {seconds[area]} s", flush=True)
  RESULTS.mkdir(exist_ok=True)
  out = {"command": "python benchmarks/faults.py", "machine": platform.platform(),
         "seconds": seconds, "all_ok": all(r["ok"] for r in rows), "rows": rows}
  (RESULTS / "faults.json").write_text(json.dumps(out, indent=2) + "\n")
  (RESULTS / "faults.md").write_text(markdown(rows))
  print(markdown(rows))
  print(f"wrote {RESULTS / 'faults.json'}; all as expected: {out['all_ok']}")


if __name__ == "__main__":
  main()
