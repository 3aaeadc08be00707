"""ANN benchmark: mmrec's serving client beside hand-tuned ScaNN and faiss IVF fast-scan.

    .venv/bin/python benchmarks/ann_benchmark.py                  # 1,000,000 x 128 (quiet machine)
    .venv/bin/python benchmarks/ann_benchmark.py --items 100000   # the development size

Synthetic clustered unit vectors (seeded): sqrt(N) Gaussian centres, each item
a centre plus Gaussian noise of the same scale, L2-normalised. Queries are
fresh draws from the mixture, like users: never items of the index. Separate
sets: tuning queries (what the bundle's tuner sees) and test queries (every
number reported here). All methods run in one process, and their timings are
interleaved round by round (batched) and query by query (single), in a fresh
random order each time, so machine load hits them alike (faiss's OpenMP
threads wait passively, so they do not spin on the next method's cores).

- `scann_hand_tuned`: a plain ScaNN build with the bundle's build parameters,
  search knobs swept on the test queries themselves (for each re-order size,
  the fewest leaves reaching Recall@10 0.95; the fastest such point): the best
  a hand-tuner can get on that grid, an oracle.
- `faiss_ivf_fastscan_refine`: faiss IVF with 4-bit PQ fast-scan (2 dims per
  code, as ScaNN's AH) and exact re-ranking (`IVF{nlist},PQ{d/2}x4fs,RFlat`),
  (k_factor, nprobe) swept the same way.
- `mmrec_client`: `export_bundle` tuned on the tuning queries (build + tuning
  + writing the bundle), then `Bundle.search` (ids mapped, as users call it).
- `scann_at_client_params`: the raw searcher inside the bundle at the knobs
  the tuner chose (the client's overhead is the gap to it).
- `numpy_brute_force`: exact search, for scale.

Batched QPS: all test queries in one call, all cores. Single-query latency:
one query per call, p50/p99. Results: benchmarks/results/ann_benchmark.{json,md},
with the ratios issue 15 sets targets for.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

# faiss's idle OpenMP threads would otherwise spin on the cores the next timed call needs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from mmrec.retrieval import export, tuning  # noqa: E402
from mmrec.serving import load_bundle  # noqa: E402

TARGET = 0.95
K = 10
RESULTS = pathlib.Path(__file__).parent / "results"
K_FACTORS = (1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 32, 40, 50, 64)
TARGETS = {  # issue 15: ratio -> (comparison, bound)
    "client_qps_over_scann_hand_tuned": (">=", 0.9),
    "client_qps_over_faiss_ivf_fastscan_refine": (">=", 1.3),
    "client_p50_over_scann_hand_tuned_p50": ("<=", 1.3),
    "client_p99_ms": ("<=", 0.3),
    "client_build_over_scann_build": ("<=", 1.5),
    "client_recall_at_10": (">=", TARGET),
}


def clustered(n, d, rng):
  centres = rng.normal(size=(max(2, int(np.sqrt(n))), d)).astype(np.float32)
  x = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, d)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True), centres


def queries_from(centres, num, rng):
  q = centres[rng.integers(0, len(centres), num)] + rng.normal(size=(num, centres.shape[1]))
  q = q.astype(np.float32)
  return q / np.linalg.norm(q, axis=1, keepdims=True)


def race(fns, queries, rounds, seed=0):
  """Batched QPS of each fn (all queries per call), best of rounds in a fresh random order."""
  rng, names, best = np.random.default_rng(seed), list(fns), dict.fromkeys(fns, np.inf)
  for _ in range(rounds):
    for name in (names[i] for i in rng.permutation(len(names))):
      start = time.perf_counter()
      fns[name](queries)
      best[name] = min(best[name], time.perf_counter() - start)
  return {name: len(queries) / t for name, t in best.items()}


def latencies(fns, queries, seed=0):
  """p50/p99 ms of one query per call; the fns run in a fresh random order for each query.

  faiss runs on one OpenMP thread meanwhile: its idle threads would otherwise spin
  on the cores the next call needs (and one query gains nothing from more)."""
  rng, names, times = np.random.default_rng(seed), list(fns), {name: [] for name in fns}
  threads = faiss.omp_get_max_threads()
  faiss.omp_set_num_threads(1)
  try:
    for fn in fns.values():  # warm-up
      fn(queries[:1])
    for i in range(len(queries)):
      q = queries[i:i + 1]
      for name in (names[i] for i in rng.permutation(len(names))):
        start = time.perf_counter()
        fns[name](q)
        times[name].append(time.perf_counter() - start)
  finally:
    faiss.omp_set_num_threads(threads)
  return {name: (float(np.percentile(np.array(t) * 1e3, 50)),
                 float(np.percentile(np.array(t) * 1e3, 99))) for name, t in times.items()}


def sweep(search, outer, inner, queries, truth, rounds):
  """The fastest (outer, inner) reaching TARGET on `queries`: for each outer value, the first
  inner value that does (binary search; inner costs grow), then a race of those points."""
  frontier, upper = [], len(inner)
  for a in outer:
    hits = lambda i: tuning.recall(search(queries, a, inner[i]), truth) >= TARGET
    if not hits(upper - 1):
      continue
    lo, hi = 0, upper - 1
    while lo < hi:
      mid = (lo + hi) // 2
      lo, hi = (lo, mid) if hits(mid) else (mid + 1, hi)
    if hi < upper - 1 or not frontier:
      frontier.append((a, inner[hi]))
    upper = hi + 1
    if hi == 0:
      break
  if not frontier:  # the most expensive point, which misses the target
    frontier = [(outer[-1], inner[-1])]
  qps = race({p: (lambda q, p=p: search(q, *p)) for p in frontier}, queries, rounds)
  return max(frontier, key=qps.get)


def dir_size(path):
  return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())


def bench(n, d, args, tmp):
  rng = np.random.default_rng(args.seed)
  emb, centres = clustered(n, d, rng)
  tune_q = queries_from(centres, args.tuning_queries, rng)
  test_q = queries_from(centres, args.queries, rng)
  single_q = test_q[:args.single_queries]
  truth = tuning.exact_top(emb, test_q, K)
  out, batched, single = {}, {}, {}

  # ScaNN, plain build (the bundle's build parameters), knobs swept on the test queries
  params = tuning.scann_params(n, d)
  start = time.perf_counter()
  searcher = tuning.build_searcher(emb, params)
  scann_build = time.perf_counter() - start
  leaves_grid = tuning.geometric_grid(1, params["num_leaves"]) if "num_leaves" in params else [-1]

  def scann(s):
    return lambda q, reorder, leaves: np.asarray(s.search_batched_parallel(
        q, K, pre_reorder_num_neighbors=reorder, leaves_to_search=leaves)[0])

  reorders = sorted({min(n, r) for r in tuning.REORDERS})
  best = sweep(scann(searcher), reorders, leaves_grid, test_q, truth, args.rounds)
  native = searcher.searcher
  batched["scann_hand_tuned"] = lambda q, p=best: scann(searcher)(q, *p)
  single["scann_hand_tuned"] = lambda q, p=best: native.search(q[0], K, *p)
  out["scann_hand_tuned"] = {"build_s": scann_build, "size_mb": None,
                             "params": {**params, "reorder": best[0],
                                        "num_leaves_to_search": best[1]}}
  print(f"  scann hand-tuned: build {scann_build:.1f} s, {best}", flush=True)

  # faiss IVF fast-scan + exact re-ranking, swept the same way
  nlist = int(args.faiss_lists_per_sqrt * np.sqrt(n))
  spec = f"IVF{nlist},PQ{d // 2}x4fs,RFlat"
  index = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
  start = time.perf_counter()
  sample = rng.choice(n, min(n, max(100_000, 40 * nlist)), replace=False)
  index.train(emb[np.sort(sample)])
  index.add(emb)
  faiss_build = time.perf_counter() - start
  refine, ivf = faiss.downcast_index(index), faiss.extract_index_ivf(index)
  file = tmp / "faiss.index"
  faiss.write_index(index, str(file))
  faiss_size = file.stat().st_size / 1e6
  file.unlink()

  def fsearch(q, k_factor, nprobe):
    refine.k_factor, ivf.nprobe = float(k_factor), int(nprobe)
    return index.search(q, K)[1]

  fbest = sweep(fsearch, K_FACTORS, tuning.geometric_grid(1, nlist), test_q, truth, args.rounds)
  batched["faiss_ivf_fastscan_refine"] = lambda q, p=fbest: fsearch(q, *p)
  single["faiss_ivf_fastscan_refine"] = lambda q, p=fbest: fsearch(q, *p)
  out["faiss_ivf_fastscan_refine"] = {"build_s": faiss_build, "size_mb": faiss_size,
                                      "params": {"index": spec, "k_factor": fbest[0],
                                                 "nprobe": fbest[1]}}
  print(f"  faiss: build {faiss_build:.1f} s, {fbest}", flush=True)

  # mmrec: export (build + tuning on the tuning queries + writing), load, Bundle.search
  start = time.perf_counter()
  path = export.export_bundle(tmp / "bundle", emb, np.arange(n).astype(str),
                              np.zeros(n, np.int64), model_info={"name": "benchmark"},
                              tuning_queries=tune_q, tuning_query_source="mixture_draws")
  client_build = time.perf_counter() - start
  start = time.perf_counter()
  bundle = load_bundle(path)
  load_s = time.perf_counter() - start
  knobs = bundle.search_knobs
  bundled = bundle.searcher.searcher
  batched["mmrec_client"] = lambda q: bundle.search(q, K)[0]
  single["mmrec_client"] = lambda q: bundle.search(q, K)
  batched["scann_at_client_params"] = lambda q: scann(bundle.searcher)(q, *knobs)
  single["scann_at_client_params"] = lambda q: bundled.search(q[0], K, *knobs)
  out["mmrec_client"] = {"build_s": client_build, "load_s": load_s,
                         "size_mb": dir_size(path) / 1e6,
                         "index_size_mb": dir_size(path / "scann") / 1e6,
                         "manifest_recall": bundle.manifest["recall"],
                         "params": {k: v for k, v in bundle.manifest["scann"].items() if k not in (
                             "mode_requested", "built_num_items", "changed_since_build")}}
  out["scann_at_client_params"] = {"build_s": None, "size_mb": dir_size(path / "scann") / 1e6,
                                   "params": {"reorder": knobs[0],
                                              "num_leaves_to_search": knobs[1]}}
  print(f"  mmrec: build {client_build:.1f} s, {out['mmrec_client']['params']}", flush=True)

  # side by side: recall on the test queries, batched QPS, single-query latency
  for name, fn in batched.items():
    found = fn(test_q)
    if name == "mmrec_client":
      found = found.astype(np.int64)  # the ids are the rows as strings
    out[name]["recall_at_10"] = tuning.recall(found, truth)
  for name, qps in race(batched, test_q, args.rounds).items():
    out[name]["qps"] = qps
  for name, (p50, p99) in latencies(single, single_q).items():
    out[name].update(p50_ms=p50, p99_ms=p99)

  def numpy_one(q):
    s = emb @ q[0]
    top = np.argpartition(-s, K)[:K]
    return top[np.argsort(-s[top])]

  start = time.perf_counter()
  found = tuning.exact_top(emb, test_q, K)
  numpy_qps = len(test_q) / (time.perf_counter() - start)
  p50, p99 = latencies({"numpy": numpy_one}, single_q[:100])["numpy"]
  out["numpy_brute_force"] = {"build_s": 0.0, "size_mb": emb.nbytes / 1e6, "qps": numpy_qps,
                              "p50_ms": p50, "p99_ms": p99,
                              "recall_at_10": tuning.recall(found, truth), "params": {}}
  c, h, f = out["mmrec_client"], out["scann_hand_tuned"], out["faiss_ivf_fastscan_refine"]
  ratios = {"client_qps_over_scann_hand_tuned": c["qps"] / h["qps"],
            "client_qps_over_faiss_ivf_fastscan_refine": c["qps"] / f["qps"],
            "client_p50_over_scann_hand_tuned_p50": c["p50_ms"] / h["p50_ms"],
            "client_p50_over_scann_at_client_params_p50":
                c["p50_ms"] / out["scann_at_client_params"]["p50_ms"],
            "client_qps_over_scann_at_client_params":
                c["qps"] / out["scann_at_client_params"]["qps"],
            "client_p99_ms": c["p99_ms"],
            "client_build_over_scann_build": c["build_s"] / h["build_s"],
            "client_recall_at_10": c["recall_at_10"]}
  return {"methods": out, "ratios": ratios,
          "targets_met": {k: bool(ratios[k] >= b if op == ">=" else ratios[k] <= b)
                          for k, (op, b) in TARGETS.items()}}


def _num(x, fmt):
  return "-" if x is None else format(x, fmt)


def markdown(results) -> str:
  lines = [f"# ANN benchmark ({results['machine']})", "",
           f"`{results['command']}` ({results['wall_s']:.0f} s). {results['dim']} dims, "
           f"Recall@10 target {TARGET} on {results['queries']} test queries (batched), "
           f"{results['single_queries']} single queries; the bundle tuned on "
           f"{results['tuning_queries']} separate queries. {results['note']}", "",
           "Data: sqrt(N) Gaussian clusters; queries are fresh draws from the mixture. "
           "The hand-tuned ScaNN and faiss points are chosen on the test queries themselves "
           "(an oracle); mmrec's client chose its knobs on the tuning queries. A recall marked "
           "* misses the target.", ""]
  for n, res in results["sizes"].items():
    lines += [f"## {int(n):,} items", "",
              "| method | build s | size MB | batched QPS | p50 ms | p99 ms | Recall@10 | params |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in res["methods"].items():
      params = {k: v for k, v in r["params"].items() if k not in (
          "mode", "num_neighbors", "dimensions_per_block", "anisotropic_quantization_threshold",
          "training_sample_size")}
      lines.append(f"| {name} | {_num(r['build_s'], '.1f')} | {_num(r['size_mb'], '.0f')} | "
                   f"{r['qps']:,.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                   f"{r['recall_at_10']:.3f}{'*' if r['recall_at_10'] < TARGET else ''} | "
                   f"{json.dumps(params)} |")
    lines += ["", "| ratio | value | target | met |", "|---|---|---|---|"]
    for name, value in res["ratios"].items():
      op, bound = TARGETS.get(name, ("", None))
      met = res["targets_met"].get(name)
      lines.append(f"| {name} | {value:.3f} | {op} {_num(bound, 'g')} | "
                   f"{'-' if met is None else 'yes' if met else 'NO'} |")
    lines.append("")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--items", default="1000000", help="catalog sizes, comma-separated")
  parser.add_argument("--dim", type=int, default=128)
  parser.add_argument("--queries", type=int, default=1000)
  parser.add_argument("--tuning-queries", type=int, default=500)
  parser.add_argument("--single-queries", type=int, default=1000)
  parser.add_argument("--rounds", type=int, default=5, help="timed rounds per batched search")
  parser.add_argument("--faiss-lists-per-sqrt", type=float, default=4.0,
                      help="faiss nlist = this x sqrt(N)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--tmp", default=None, help="scratch directory for the indexes")
  parser.add_argument("--note", default="", help="free text for the report (e.g. machine load)")
  parser.add_argument("--out", default=str(RESULTS / "ann_benchmark"))
  parser.add_argument("--report-only", action="store_true",
                      help="rewrite OUT.md from OUT.json without running")
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  if args.report_only:
    out.with_suffix(".md").write_text(markdown(json.loads(out.with_suffix(".json").read_text())))
    return
  begin = time.perf_counter()
  results = {"command": " ".join([".venv/bin/python benchmarks/ann_benchmark.py", *sys.argv[1:]]),
             "dim": args.dim, "queries": args.queries, "single_queries": args.single_queries,
             "tuning_queries": args.tuning_queries, "seed": args.seed, "note": args.note,
             "machine": f"{platform.machine()}, {os.cpu_count()} cores, faiss {faiss.__version__}",
             "sizes": {}}
  for n in (int(s) for s in args.items.split(",")):
    print(f"== {n:,} items x {args.dim}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
      results["sizes"][str(n)] = bench(n, args.dim, args, pathlib.Path(tmp))
    results["wall_s"] = time.perf_counter() - begin
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(markdown(results))
  print(markdown(results))


if __name__ == "__main__":
  main()
