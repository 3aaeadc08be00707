"""Rewrites the README's demo table from a `mmrec demo` workdir, so its figures are
what a run printed, with the run's time and machine (never typed by hand).

  make demo && python tools/readme_results.py runs/demo

The block between the two markers below is replaced; the rest of README.md is kept.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from mmrec.demo import RUN_FILE
from mmrec.evaluation.evaluate import format_table

ROOT = pathlib.Path(__file__).resolve().parent.parent
START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"


INTERVAL_KEYS = ("recall@20", "ndcg@20", "recall@20/tail", "recall@20/cold")


def intervals(rows: dict[str, dict]) -> str:
  """A markdown table of INTERVAL_KEYS with their 95% bootstrap intervals over users."""
  lines = ["| model | " + " | ".join(INTERVAL_KEYS) + " |", "|---" * (len(INTERVAL_KEYS) + 1) + "|"]
  for name, m in rows.items():
    cells = [f"{m[k]:.4f} [{m[k + '/ci_low']:.4f}, {m[k + '/ci_high']:.4f}]"
             if k + "/ci_low" in m else f"{m[k]:.4f}" for k in INTERVAL_KEYS]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def block(workdir: pathlib.Path) -> str:
  """The README's demo block: the table as `mmrec demo` printed it, the main metrics with
  their intervals, then the run."""
  rows = json.loads((workdir / "comparison.json").read_text())
  run = json.loads((workdir / RUN_FILE).read_text())
  return (f"{START}\n```\n{format_table(rows)}\n```\n\n"
          f"With 95% bootstrap intervals over the test users:\n\n{intervals(rows)}\n\n"
          f"`{run['split']}` split. Measured by the demo itself: finished in "
          f"{run['seconds']:.0f} s on {run['machine']} ({run['finished_at']}; written by "
          f"`tools/readme_results.py`).\n{END}")


def rewrite(readme: str, new_block: str) -> str:
  if readme.count(START) != 1 or readme.count(END) != 1:
    raise ValueError(f"README.md must hold {START} and {END} once each")
  head, rest = readme.split(START)
  return head + new_block + rest.split(END, 1)[1]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdir", type=pathlib.Path, help="a `mmrec demo --workdir` directory")
  parser.add_argument("--readme", type=pathlib.Path, default=ROOT / "README.md")
  args = parser.parse_args()
  for name in ("comparison.json", RUN_FILE):
    if not (args.workdir / name).is_file():
      sys.exit(f"readme_results: {args.workdir / name} not found; run `mmrec demo --workdir "
               f"{args.workdir}` first")
  args.readme.write_text(rewrite(args.readme.read_text(), block(args.workdir)))
  print(f"readme_results: {args.readme} updated from {args.workdir}")


if __name__ == "__main__":
  main()
