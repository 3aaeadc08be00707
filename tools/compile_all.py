"""Compile every TPU config ahead of time on this (CPU) machine and print a markdown table.

  .venv/bin/python tools/compile_all.py [--timeout 1800] [tpu_configs/v4_8.py ...]

Each config compiles in its own process (libtpu topology, no TPU needed); a
config that fails to compile gets a row saying why. The table goes to
stdout, and to benchmarks/results/tpu_compile.json as data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
ONE = """
import dataclasses, importlib.util, json, sys
import jax
jax.config.update("jax_platforms", "cpu")
from mmrec.training import compile as aot
path, _, arg = sys.argv[1].partition(":")
spec = importlib.util.spec_from_file_location("tpu_config", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
_, report = aot.compile_train_step(module.get_config(*([arg] if arg else [])), sys.argv[1])
print("REPORT " + json.dumps(dataclasses.asdict(report)))
"""


def compile_one(config: str, timeout: float) -> dict:
  start = time.perf_counter()
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  try:
    out = subprocess.run([sys.executable, "-c", ONE, config], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return {"config": config, "error": f"compile did not finish in {timeout:.0f} s"}
  seconds = time.perf_counter() - start
  for line in out.stdout.splitlines():
    if line.startswith("REPORT "):
      return {"config": config, "compile_seconds": seconds, **json.loads(line[7:])}
  lines = [l for l in out.stderr.splitlines() if "Error" in l or "error" in l] or [""]
  return {"config": config, "compile_seconds": seconds, "error": lines[-1][-300:]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("configs", nargs="*", help="config files (default: tpu_configs/*.py)")
  parser.add_argument("--timeout", type=float, default=1800)
  parser.add_argument("--out", default=str(ROOT / "benchmarks/results/tpu_compile.json"))
  args = parser.parse_args()
  configs = args.configs or sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("tpu_configs/*.py"))
  sys.path.insert(0, str(ROOT))
  from mmrec.training.compile import MARKDOWN_HEADER, Report, markdown_row
  results = []
  print(MARKDOWN_HEADER)
  for config in configs:
    r = compile_one(config, args.timeout)
    results.append(r)
    if "error" in r:
      print(f"| {config} | does not compile: {r['error']} |", flush=True)
    else:
      fields = {f.name for f in dataclasses.fields(Report)}
      print(markdown_row(Report(**{k: v for k, v in r.items() if k in fields}))
            + f" compiled in {r['compile_seconds']:.0f} s", flush=True)
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
  main()
