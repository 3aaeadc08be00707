r"""Load test of the HTTP service (`mmrec serve`) on loopback.

COMMAND: .venv/bin/python benchmarks/load_test.py  # ~1-2 min with a cached bundle

Builds (once, cached under --cache) a bundle of clustered random embeddings
(100,000 x 64 by default; ScaNN tree + AH, tuned by the exporter), starts
`mmrec serve` on 127.0.0.1 as a subprocess, and drives it from a second
process with httpx async clients: one sequential client (unloaded latency),
then `--concurrency` clients for `--duration` seconds. The request mix is 60%
recommend-by-history (1-20 ids), 20% recommend-by-embedding (a tenth of them
with beta), 20% similar items; k = 20. Reports sustained requests/s, latency
p50/p90/p99/max, errors (any non-200 or transport error), the server's own
request count and mean latency from /metrics, and its CPU use. Writes
benchmarks/results/load_test.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
WARMUP_SECONDS = 2.0
K = 20


def build_bundle(path: pathlib.Path, n: int, d: int) -> float | None:
  """Exports the benchmark bundle unless a matching one is cached; build seconds or None."""
  manifest = path / "manifest.json"
  if manifest.exists():
    m = json.loads(manifest.read_text())
    if (m["num_items"], m["dimension"]) == (n, d):
      return None
  from mmrec.retrieval.export import export_bundle
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(max(1, n // 100), d))  # clustered, like trained embeddings
  emb = centers[rng.integers(0, len(centers), n)] + 0.5 * rng.normal(size=(n, d))
  emb /= np.linalg.norm(emb, axis=1, keepdims=True)
  popularity = np.floor(1000 / (1 + np.arange(n)) ** 0.8).astype(np.int64)  # Zipf-like
  metadata = {"title": [f"Product {i}" for i in range(n)],
              "category": [f"cat-{i % 50}" for i in range(n)]}
  start = time.perf_counter()
  export_bundle(path, emb, np.array([f"sku-{i}" for i in range(n)]), rng.permutation(popularity),
                model_info={"name": "load_test_random"}, metadata=metadata)
  return time.perf_counter() - start


def start_server(bundle: pathlib.Path, log_path: pathlib.Path):
  """`mmrec serve` on a free loopback port; returns (process, base url)."""
  log = open(log_path, "w")
  proc = subprocess.Popen([sys.executable, "-m", "mmrec.cli", "serve", f"--bundle={bundle}",
                           "--port=0"], stderr=log, stdout=log, cwd=REPO)
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline:
    bound = re.search(r"running on (http://127\.0\.0\.1:\d+)", log_path.read_text())
    if bound:
      return proc, bound.group(1)
    if proc.poll() is not None:
      raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
    time.sleep(0.2)
  proc.kill()
  raise RuntimeError("the server did not start within 120 s")


def _request(rng: np.random.Generator, n: int, d: int):
  """(kind, method, path, json body) of one request from the mix."""
  u = rng.random()
  if u < 0.6:
    history = [f"sku-{i}" for i in rng.integers(0, n, rng.integers(1, 21))]
    return "recommend_history", "POST", "/v1/recommend", {"history": history, "k": K}
  if u < 0.8:
    query = rng.normal(size=d)
    body = {"embedding": (query / np.linalg.norm(query)).round(6).tolist(), "k": K}
    if rng.random() < 0.1:
      body["beta"] = 0.1
    return "recommend_embedding", "POST", "/v1/recommend", body
  return "similar", "GET", f"/v1/similar/sku-{rng.integers(0, n)}?k={K}", None


async def _drive(url: str, n: int, d: int, concurrency: int, duration: float,
                 seed: int) -> list:
  """Raw records (kind, seconds, status or error) of `concurrency` clients in this process."""
  import httpx
  limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
  records = []  # (kind, seconds, status or error)
  async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
    measure_from = time.perf_counter() + WARMUP_SECONDS
    end = measure_from + duration

    async def worker(worker_seed):
      rng = np.random.default_rng(worker_seed)
      while (now := time.perf_counter()) < end:
        kind, method, path, body = _request(rng, n, d)
        try:
          r = await client.request(method, path, json=body)
          outcome = r.status_code
          if outcome == 200 and len(r.json()["items"]) != K:
            outcome = "short answer"
        except httpx.HTTPError as e:
          outcome = type(e).__name__
        if now >= measure_from:
          records.append((kind, time.perf_counter() - now, outcome))

    await asyncio.gather(*(worker(seed * 1000 + w) for w in range(concurrency)))
  return records


def _summary(records, duration: float) -> dict:
  def stats(rows):
    ms = np.array([r[1] for r in rows]) * 1e3
    return {"requests": len(rows),
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p90_ms": round(float(np.percentile(ms, 90)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
            "max_ms": round(float(ms.max()), 2) if len(ms) else None}

  errors = {}
  for _, _, outcome in records:
    if outcome != 200:
      errors[str(outcome)] = errors.get(str(outcome), 0) + 1
  kinds = sorted({r[0] for r in records})
  return {**stats(records), "requests_per_s": round(len(records) / duration, 1),
          "errors": sum(errors.values()), "error_kinds": errors,
          "by_kind": {kind: stats([r for r in records if r[0] == kind]) for kind in kinds}}


def _server_metrics(url: str) -> dict:
  """Server-side request counts and latency sums per route from /metrics."""
  import httpx
  text = httpx.get(f"{url}/metrics", timeout=30).text
  counts, sums = {}, {}
  for route, status, value in re.findall(
      r'mmrec_http_requests_total\{method="\w+",route="([^"]+)",status="(\d+)"\} (\d+)', text):
    counts[(route, status)] = int(value)
  for route, value in re.findall(
      r'mmrec_http_request_duration_seconds_sum\{method="\w+",route="([^"]+)"\} ([\d.e-]+)', text):
    sums[route] = float(value)
  return {"counts": counts, "sums": sums}


def _metrics_delta(before: dict, after: dict) -> dict:
  routes = ("/v1/recommend", "/v1/similar/{item_id:path}")
  out = {}
  for route in routes:
    ok = after["counts"].get((route, "200"), 0) - before["counts"].get((route, "200"), 0)
    total = sum(v - before["counts"].get(key, 0) for key, v in after["counts"].items()
                if key[0] == route)
    seconds = after["sums"].get(route, 0.0) - before["sums"].get(route, 0.0)
    out[route] = {"requests": total, "non_200": total - ok,
                  "mean_ms_in_server": round(1e3 * seconds / total, 2) if total else None}
  return out


def _cpu_seconds(pid: int) -> float:
  fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run_phase(url, proc, n, d, concurrency, duration, seed, processes) -> dict:
  """Drives the server from `processes` client processes; adds server-side figures."""
  before, cpu_before = _server_metrics(url), _cpu_seconds(proc.pid)
  load_before = os.getloadavg()[0]
  shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
  drivers = [subprocess.Popen(
      [sys.executable, __file__, "--drive", url, f"--items={n}", f"--dim={d}",
       f"--concurrency={share}", f"--duration={duration}", f"--seed={seed * 100 + i}"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
      for i, share in enumerate(shares) if share]
  records, client_cpu = [], 0.0
  for driver in drivers:
    out, err = driver.communicate(timeout=duration + 300)
    if driver.returncode != 0:
      raise RuntimeError(f"a load driver failed: {err[-3000:]}")
    answer = json.loads(out)
    records += answer["records"]
    client_cpu += answer["cpu_seconds"]
  cpu = _cpu_seconds(proc.pid) - cpu_before
  return {"concurrency": concurrency, "client_processes": len(drivers), "duration_s": duration,
          **_summary(records, duration),
          "server": _metrics_delta(before, _server_metrics(url)),
          "server_cpu_cores_used": round(cpu / (duration + WARMUP_SECONDS), 2),
          "client_cpu_cores_used": round(client_cpu / (duration + WARMUP_SECONDS), 2),
          "load_average_1m_before": round(load_before, 2)}


def write_results(result: dict) -> None:
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "load_test.json").write_text(json.dumps(result, indent=1) + "\n")
  b = result["bundle"]
  lines = [
      "# HTTP service load test", "",
      f"`mmrec serve` (uvicorn, 1 process, access log on) on 127.0.0.1 over a bundle of "
      f"{b['num_items']:,} items x {b['dimension']} dims (ScaNN `{b['scann_mode']}`, "
      f"measured Recall@10 {b['recall']}), driven by httpx async clients in separate "
      f"processes. Mix: 60% recommend by history (1-20 ids), 20% by embedding (10% of those "
      f"with beta), 20% similar; k = {K}. {WARMUP_SECONDS:g} s warm-up not counted.", "",
      f"Machine: {result['machine']['cpus']} CPUs, shared with other jobs (load average "
      f"{result['machine']['load_average_1m_at_start']} at start); client and server compete "
      "for the same cores, so these figures are a floor, not a capacity.", "",
      "| phase | clients (processes) | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors | "
      "CPU cores: server / clients |", "|---|---|---|---|---|---|---|---|---|"]
  for name, p in result["phases"].items():
    lines.append(f"| {name} | {p['concurrency']} ({p['client_processes']}) | "
                 f"{p['requests_per_s']} | {p['p50_ms']} | {p['p90_ms']} | {p['p99_ms']} | "
                 f"{p['max_ms']} | {p['errors']} of {p['requests']} | "
                 f"{p['server_cpu_cores_used']} / {p['client_cpu_cores_used']} |")
  lines += ["", "Per request kind (concurrent phase):", "",
            "| kind | requests | p50 ms | p99 ms |", "|---|---|---|---|"]
  for kind, s in result["phases"]["concurrent"]["by_kind"].items():
    lines.append(f"| {kind} | {s['requests']} | {s['p50_ms']} | {s['p99_ms']} |")
  lines += ["", "Server-side (from /metrics; mean time inside the server, per route):", "",
            "| phase | route | requests | non-200 | mean ms in server |", "|---|---|---|---|---|"]
  for name, p in result["phases"].items():
    for route, s in p["server"].items():
      lines.append(f"| {name} | `{route}` | {s['requests']} | {s['non_200']} | "
                   f"{s['mean_ms_in_server']} |")
  lines += ["", f"Command: `{result['command']}`", ""]
  (RESULTS / "load_test.md").write_text("\n".join(lines))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--items", type=int, default=100_000)
  parser.add_argument("--dim", type=int, default=64)
  parser.add_argument("--concurrency", type=int, default=32)
  parser.add_argument("--duration", type=float, default=25.0, help="seconds, concurrent phase")
  parser.add_argument("--client_processes", type=int, default=2,
                      help="client processes sharing the concurrent clients")
  parser.add_argument("--sequential_duration", type=float, default=8.0)
  parser.add_argument("--cache", default="/tmp/mmrec_load_test", help="where the bundle is kept")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)  # the client process
  args = parser.parse_args()
  if args.drive:
    records = asyncio.run(_drive(args.drive, args.items, args.dim, args.concurrency,
                                 args.duration, args.seed))
    print(json.dumps({"records": records, "cpu_seconds": time.process_time()}))
    return

  cache = pathlib.Path(args.cache)
  cache.mkdir(parents=True, exist_ok=True)
  bundle = cache / f"bundle_{args.items}x{args.dim}"
  build_s = build_bundle(bundle, args.items, args.dim)
  manifest = json.loads((bundle / "manifest.json").read_text())
  load_avg = os.getloadavg()[0]
  proc, url = start_server(bundle, cache / "server.log")
  try:
    phases = {
        "sequential": run_phase(url, proc, args.items, args.dim, 1, args.sequential_duration,
                                args.seed, 1),
        "concurrent": run_phase(url, proc, args.items, args.dim, args.concurrency,
                                args.duration, args.seed + 1, args.client_processes),
    }
  finally:
    proc.terminate()
    proc.wait(30)
  result = {
      "command": " ".join(["benchmarks/load_test.py", *sys.argv[1:]]),
      "bundle": {"num_items": args.items, "dimension": args.dim,
                 "scann_mode": manifest["scann"].get("mode"),
                 "recall": manifest.get("recall", {}).get("recall_at_10"),
                 "build_seconds": None if build_s is None else round(build_s, 1)},
      "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                  "load_average_1m_at_start": round(load_avg, 2),
                  "note": "shared with other concurrent jobs; client and server on one host"},
      "phases": phases,
  }
  write_results(result)
  print(json.dumps({name: {k: p[k] for k in ("requests_per_s", "p50_ms", "p99_ms", "errors",
                                              "requests")} for name, p in phases.items()},
                   indent=1))


if __name__ == "__main__":
  main()
