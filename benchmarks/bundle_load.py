"""Bundle load time and memory against loading its ScaNN searcher alone (issue 15).

  .venv/bin/python benchmarks/bundle_load.py            # 200,000 x 128, about a minute
  .venv/bin/python benchmarks/bundle_load.py --items 1000000

Exports one tree-AH bundle of random vectors, then, in fresh processes taking
turns (page cache warm for both), measures: ScaNN's pybind searcher built from
the bundle's scann/ alone; `load_bundle` as a service loads it (structural
checks, vectors memory-mapped, no hashing); and `load_bundle(verify_checksums=True)`
as `mmrec serve` and `mmrec bundle verify` do. Medians over --repeats. RSS is
the process's resident memory after loading; "added" is the growth during the
load (after imports). Writes benchmarks/results/bundle_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile

import numpy as np

RESULTS = pathlib.Path(__file__).parent / "results" / "bundle_load.json"

_CHILD = """
import json, sys, time
def rss_mb():
  for line in open("/proc/self/status"):
    if line.startswith("VmRSS"):
      return int(line.split()[1]) / 1024
what, path = sys.argv[1], sys.argv[2]
from scann.scann_ops.py import scann_ops_pybind
import mmrec.serving
from mmrec.serving import scann_assets
before = rss_mb()
start = time.perf_counter()
if what == "scann_alone":
  text = open(path + "/scann/scann_assets.pbtxt").read()
  loaded = scann_ops_pybind.scann_pybind.ScannNumpy(path + "/scann", text)
else:
  loaded = mmrec.serving.load_bundle(path, verify_checksums=what == "bundle_verified")
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rss_mb": rss_mb(), "added_mb": rss_mb() - before}))
"""
_KINDS = ("scann_alone", "bundle", "bundle_verified")


def _measure(kind: str, path: pathlib.Path) -> dict:
  done = subprocess.run([sys.executable, "-c", _CHILD, kind, str(path)], capture_output=True,
                        text=True, timeout=600, check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def _bundle(path: pathlib.Path, items: int, dim: int) -> pathlib.Path:
  from mmrec.retrieval import export
  manifest = path / "manifest.json"
  if manifest.is_file() and json.loads(manifest.read_text())["num_items"] == items:
    return path.resolve()
  rng = np.random.default_rng(0)
  return export.export_bundle(
      path, rng.normal(size=(items, dim)).astype(np.float32),
      np.array([f"sku-{i:08d}" for i in rng.permutation(items)]), rng.integers(0, 100, items),
      model_info={"name": "bundle_load"}, scann_mode="tree_ah").resolve()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--items", type=int, default=200_000)
  parser.add_argument("--dim", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
  parser.add_argument("--keep", type=pathlib.Path, help="export the bundle here and keep it "
                      "(reused when it holds one of --items)")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    root = _bundle(args.keep or pathlib.Path(tmp) / "bundle", args.items, args.dim)
    sizes = {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*")
             if p.is_file()}
    runs = {kind: [] for kind in _KINDS}
    for _ in range(args.repeats):
      for kind in _KINDS:
        runs[kind].append(_measure(kind, root))
  median = {kind: {key: round(statistics.median(r[key] for r in rows), 4)
                   for key in ("seconds", "rss_mb", "added_mb")}
            for kind, rows in runs.items()}
  alone, bundle = median["scann_alone"], median["bundle"]
  scann_bytes = sum(v for k, v in sizes.items() if k.startswith("scann/"))
  result = {
      "items": args.items, "dim": args.dim, "mode": "tree_ah", "repeats": args.repeats,
      "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                 f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}",
      "median": median,
      "ratios": {"load_time": round(bundle["seconds"] / alone["seconds"], 3),
                 "rss": round(bundle["rss_mb"] / alone["rss_mb"], 3),
                 "rss_added": round(bundle["added_mb"] / alone["added_mb"], 3),
                 "verified_load_time": round(median["bundle_verified"]["seconds"] /
                                             alone["seconds"], 3),
                 "disk": round(sum(sizes.values()) / scann_bytes, 3)},
      "target": "load_time and rss at most 1.2 (issue 15)",
      "files_mb": {k: round(v / 2**20, 2) for k, v in sorted(sizes.items())},
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=1) + "\n")
  print(json.dumps({k: result[k] for k in ("median", "ratios")}, indent=1))


if __name__ == "__main__":
  main()
