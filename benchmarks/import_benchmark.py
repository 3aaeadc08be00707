"""Import speed and memory: a generated generic CSV of 1,000,000 interactions.

  .venv/bin/python benchmarks/import_benchmark.py [--rows 1000000] [--images 3000]

Writes interactions.csv (Zipf item popularity, 0.1% malformed or bad rows),
items.csv and a few thousand 256x256 JPEGs (keyed by item id) to a temporary
directory, then runs the import (read, clean, build the TFDS dataset) in a
child process pinned to 2 cores, timing each phase and reading the child's
peak RSS (resource.getrusage). Results: benchmarks/results/import_benchmark.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

RESULTS = pathlib.Path(__file__).parent / "results"


def generate(path: pathlib.Path, rows: int, items: int, users: int, images: int, seed: int = 0):
  """Writes the raw files in chunks (the generator itself stays small in memory)."""
  from PIL import Image
  rng = np.random.default_rng(seed)
  path.mkdir(parents=True, exist_ok=True)
  with open(path / "items.csv", "w") as f:
    f.write("item_id,title,description,category\n")
    for i in range(items):
      f.write(f"i{i},Product {i} in colour {i % 17},\"A <b>fine</b> thing, made of material "
              f"{i % 11} &amp; style {i % 7}\",cat{i % 23}\n")
  popularity = 1.0 / np.arange(1, items + 1) ** 0.9
  popularity /= popularity.sum()
  chunk = 200_000
  with open(path / "interactions.csv", "w") as f:
    f.write("user_id,item_id,timestamp,rating\n")
    for start in range(0, rows, chunk):
      n = min(chunk, rows - start)
      user = rng.integers(0, users, n)
      item = rng.choice(items, n, p=popularity)
      ts = 1_600_000_000 + rng.integers(0, 3 * 365 * 86400, n)
      rating = rng.integers(1, 6, n)
      lines = [f"u{u},i{i},{t},{r}" for u, i, t, r in zip(user.tolist(), item.tolist(),
                                                          ts.tolist(), rating.tolist())]
      for k in rng.choice(n, max(1, n // 1000), replace=False).tolist():  # 0.1% bad rows
        lines[k] = rng.choice(["u1,i1", f"u1,i{items + 5},1600000000,3", "u2,i2,soon,4"])
      f.write("\n".join(lines) + "\n")
  folder = path / "images"
  folder.mkdir(exist_ok=True)
  for i in range(images):
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    image = Image.new("RGB", (256, 256), colour)
    image.paste(Image.effect_noise((128, 128), 40).convert("RGB"), (64, 64))
    image.save(folder / f"i{i}.jpg", quality=90)
  if images:  # One broken file, to be counted, not to stop the import.
    (folder / f"i{images}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")


def measure(path: pathlib.Path, out_dir: pathlib.Path) -> dict:
  """The import as `mmrec data import generic` runs it, phase by phase."""
  from mmrec.configs import two_tower
  from mmrec.data import dataset as dataset_lib
  from mmrec.data import importers
  from mmrec.data.importers import build
  cfg = two_tower.get_config("small").data
  cfg.source, cfg.import_.format, cfg.import_.path = "import", "generic", str(path)
  cfg.clean.update(user_core=5, item_core=5)
  times = {}
  start = time.perf_counter()
  imported = importers.read("generic", path, importers.Options.from_config(cfg))
  times["read_s"] = time.perf_counter() - start
  rss_read = _peak_rss_mib()
  start = time.perf_counter()
  catalog, interactions, user_ids, report = build.clean(imported, cfg.clean)
  times["clean_s"] = time.perf_counter() - start
  del imported
  start = time.perf_counter()
  dataset_lib.build_dataset(out_dir, "bench", catalog, interactions, num_users=len(user_ids),
                            protocol=cfg.protocol, vocab_size=cfg.vocab_size,
                            extra_files={build.USER_IDS_FILE: json.dumps(user_ids)})
  times["build_dataset_s"] = time.perf_counter() - start
  times["total_s"] = sum(times.values())
  usage = resource.getrusage(resource.RUSAGE_SELF)
  times["cpu_s"] = usage.ru_utime + usage.ru_stime  # the whole child, imports included
  return {**{k: round(v, 2) for k, v in times.items()}, "peak_rss_after_read_mib": rss_read,
          "peak_rss_mib": _peak_rss_mib(), "report": report}


def _peak_rss_mib() -> float:
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", type=int, default=1_000_000)
  parser.add_argument("--items", type=int, default=20_000)
  parser.add_argument("--users", type=int, default=0, help="default: rows / 20")
  parser.add_argument("--images", type=int, default=3_000)
  parser.add_argument("--measure", help=argparse.SUPPRESS)  # child: import this directory
  args = parser.parse_args()
  args.users = args.users or max(1, args.rows // 20)
  if args.measure:
    result = measure(pathlib.Path(args.measure), pathlib.Path(args.measure) / "out")
    print("RESULT " + json.dumps(result))
    return
  with tempfile.TemporaryDirectory() as tmp:
    raw = pathlib.Path(tmp) / "raw"
    start = time.perf_counter()
    generate(raw, args.rows, args.items, args.users, args.images)
    generate_s = time.perf_counter() - start
    size_mib = sum(f.stat().st_size for f in raw.rglob("*") if f.is_file()) / 2**20
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    cores = sorted(os.sched_getaffinity(0))[:2]
    child = subprocess.run(
        [sys.executable, __file__, f"--measure={raw}"], capture_output=True, text=True, env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, cores))
    if child.returncode:
      sys.exit(child.stderr[-3000:])
    result = json.loads(child.stdout.split("RESULT ", 1)[1])
  report = result.pop("report")
  record = {"rows": args.rows, "items": args.items, "users": args.users, "images": args.images,
            "raw_mib": round(size_mib, 1), "generate_s": round(generate_s, 1), **result,
            "cores": len(cores), "cpu": platform.processor() or platform.machine(),
            "os_cpus": os.cpu_count(), "final": report["final"], "steps": report["steps"],
            "images_outcome": report["items"]["images"],
            "note": "shared machine: other jobs ran at the same time; times are indicative"}
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / "import_benchmark.json").write_text(json.dumps(record, indent=2) + "\n")
  (RESULTS / "import_benchmark.md").write_text(_markdown(record))
  print(_markdown(record))


def _markdown(r: dict) -> str:
  steps = "\n".join(f"| {s['step']} | {s.get('after', s)['users']} | {s.get('after', s)['items']} "
                    f"| {s.get('after', s)['interactions']} |" for s in r["steps"])
  return f"""# Import benchmark (benchmarks/import_benchmark.py)

Generic CSV, {r['rows']:,} interaction rows ({r['raw_mib']} MiB with items and
{r['images']} images of 256x256), {r['users']:,} users, {r['items']:,} items,
5-core; pinned to {r['cores']} cores of a shared {r['os_cpus']}-CPU machine (other jobs ran
at the same time, so times are indicative).

| phase | seconds |
|---|---|
| read (parse, remap ids, {r['images_outcome']['ok']} images re-encoded) | {r['read_s']} |
| clean (duplicates, repeats, k-core) | {r['clean_s']} |
| build_dataset (validate, split, tokenizer, TFDS ArrayRecord) | {r['build_dataset_s']} |
| **total** | **{r['total_s']}** |

CPU time of the import process: {r['cpu_s']} s (wall time above it means other jobs held
the cores). Images: {', '.join(f'{k} {v}' for k, v in r['images_outcome'].items())}.

Peak RSS: {r['peak_rss_after_read_mib']} MiB after reading, {r['peak_rss_mib']} MiB overall.

| step | users | items | interactions |
|---|---|---|---|
{steps}
"""


if __name__ == "__main__":
  main()
