"""Exports killed with SIGKILL at chosen file-system steps, for the kill tests and the
fault table (`kill_summary()`).

A child process exports a new bundle over an existing one and SIGKILLs itself just
before its k-th step (np.save, write_*, serialize, fsync, symlink, rename, replace,
exchange, rmtree). A dry run lists the steps; the parent then kills at chosen steps
and checks that the bundle path still loads, fully verified, as the old or the new one.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap

from mmrec.serving import load_bundle

CHILD = textwrap.dedent("""
    import json, os, pathlib, shutil, signal, sys
    import numpy as np
    from scann.scann_ops.py import scann_ops_pybind
    from mmrec.retrieval import export, publish

    path, kill_at = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    steps = []

    def hooked(owner, name, label):
      real = getattr(owner, name)
      def step(*args, **kwargs):
        steps.append(label)
        if len(steps) == kill_at:
          os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
      setattr(owner, name, step)

    for owner, name in [(np, "save"), (pathlib.Path, "write_text"), (pathlib.Path, "write_bytes"),
                        (os, "fsync"), (os, "symlink"), (os, "rename"), (os, "replace"),
                        (shutil, "rmtree"), (publish, "_exchange"),
                        (scann_ops_pybind.ScannSearcher, "serialize")]:
      hooked(owner, name, name)
    rng = np.random.default_rng(2)
    ids = np.array([f"new-{i}" for i in range(120)])
    export.export_bundle(path, rng.normal(size=(120, 8)), ids,
                         rng.integers(0, 9, 120), model_info={"name": "new"})
    print(json.dumps(steps))
""")


def _old_bundle(parent: pathlib.Path, layout: str) -> pathlib.Path:
  import numpy as np
  from mmrec.retrieval import export
  rng = np.random.default_rng(1)
  path = export.export_bundle(parent / "pointer" / "bundle", rng.normal(size=(100, 8)),
                              np.array([f"old-{i}" for i in range(100)]),
                              rng.integers(0, 9, 100), model_info={"name": "old"})
  if layout == "plain":  # a plain directory, as exporters before the pointer wrote
    shutil.copytree(path, parent / "plain" / "bundle")
    return parent / "plain"
  return parent / "pointer"


def _child(path: pathlib.Path, kill_at: int) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", CHILD, str(path), str(kill_at)],
                        capture_output=True, text=True, timeout=300)


def kill_points(steps: list[str]) -> list[int]:
  """1-based steps to kill at: every rename-like step and its neighbours, plus the first
  write, the searcher's serialization and the fsyncs' middle."""
  chosen = {1, steps.index("serialize") + 1, len(steps)}
  fsyncs = [i for i, s in enumerate(steps, 1) if s == "fsync"]
  if fsyncs:
    chosen.add(fsyncs[len(fsyncs) // 2])
  for i, s in enumerate(steps, 1):
    if s in ("symlink", "rename", "replace", "_exchange", "rmtree"):
      chosen.update({i, i + 1})
  return sorted(k for k in chosen if 1 <= k <= len(steps))


def run_kills(tmp: pathlib.Path, layout: str) -> list[dict]:
  """For each kill point: which bundle then loads at the path ("old", "new"), or the error."""
  template = _old_bundle(tmp / "template", layout)
  dry = tmp / "dry"
  shutil.copytree(template, dry, symlinks=True)
  done = _child(dry / "bundle", 0)
  if done.returncode != 0:
    raise RuntimeError(f"the export child failed: {done.stderr[-2000:]}")
  steps = json.loads(done.stdout.strip().splitlines()[-1])
  results = []
  for k in kill_points(steps):
    work = tmp / f"kill-{layout}-{k}"
    shutil.copytree(template, work, symlinks=True)
    killed = _child(work / "bundle", k)
    try:
      loaded = load_bundle(work / "bundle", verify_checksums=True).manifest["model"]["name"]
    except Exception as e:  # noqa: BLE001 -- reported, the test asserts on it
      loaded = f"error: {e}"
    results.append({"layout": layout, "kill_at": k, "step": steps[k - 1],
                    "killed": killed.returncode == -9, "loads": loaded})
    shutil.rmtree(work)
  return results


def kill_summary() -> dict:
  """The fault-table row for exports killed with SIGKILL."""
  with tempfile.TemporaryDirectory() as tmp:
    runs = [r for layout in ("pointer", "plain")
            for r in run_kills(pathlib.Path(tmp) / layout, layout)]
  ok = all(r["killed"] and r["loads"] in ("old", "new") for r in runs)
  return {"area": "bundle", "fault": "export killed (SIGKILL)", "cases": len(runs),
          "outcome": "recovered: the old or the new bundle loads, verified", "ok": ok,
          "example": f"killed at {runs[0]['step']}: the {runs[0]['loads']} bundle loads"}
