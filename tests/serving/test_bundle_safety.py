"""Hostile bundles: every tamper refused by name, no pickle ever run, kills survived."""

import os
import pathlib
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # --import-mode=importlib adds none
import killing  # noqa: E402
import tamper  # noqa: E402
from mmrec.retrieval import update
from mmrec.serving import BundleError, load_bundle
from mmrec.serving.verify import verify_bundle
from mmrec.serving.watch import BundleWatcher


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("bases")
  return {"brute_force": tamper.make_bundle(tmp / "brute_force"),
          "tree_ah": tamper.make_bundle(tmp / "tree_ah", "tree_ah", 400)}


def test_the_bases_load_and_verify(bases):
  for path in bases.values():
    bundle = load_bundle(path)
    assert verify_bundle(path)["num_items"] == bundle.num_items
    ids, _ = bundle.search(bundle.embeddings[:2], 1, exact=True)
    assert ids[:, 0].tolist() == bundle.item_ids[np.argmax(
        bundle.embeddings[:2] @ np.asarray(bundle.embeddings).T, axis=1)].tolist()


@pytest.mark.parametrize("case", tamper.TAMPERS, ids=lambda t: t.case)
def test_tampered_bundles_are_refused_by_name(bases, tmp_path, case):
  seen = tamper.refusal(case, bases[case.mode], tmp_path)
  assert not seen["canary"], "a pickle ran"
  assert seen["verify"] is not None, "`mmrec bundle verify` accepted it"
  assert seen["ok"], seen  # the right message, at load too unless only a checksum can tell


def test_the_canary_is_real(tmp_path, bases):
  """The canary pickle does run when unpickled, and scann's own loader unpickles it."""
  from scann.scann_ops.py import scann_ops_pybind
  data = tamper.canary_pickle(tmp_path / "x")
  pickle.loads(data)
  assert (tmp_path / tamper.CANARY_NAME).exists()
  (tmp_path / tamper.CANARY_NAME).unlink()
  shutil.copytree(bases["brute_force"] / "scann", tmp_path / "scann")
  (tmp_path / "scann" / "scann_docids.pkl").write_bytes(tamper.canary_pickle(tmp_path / "scann"))
  try:
    scann_ops_pybind.load_searcher(str(tmp_path / "scann"))
  except Exception:  # noqa: BLE001 -- the pickle gave a file object, not docids
    pass
  assert (tmp_path / tamper.CANARY_NAME).exists()


@pytest.mark.parametrize("listed", [True, False])
def test_a_pickle_never_runs_through_any_entry_point(bases, tmp_path, listed):
  path = tmp_path / "bundle"
  shutil.copytree(bases["brute_force"], path)
  tamper._pickle_file("scann/scann_docids.pkl", listed)(path)
  entries = {
      "load_bundle": lambda: load_bundle(path),
      "verify_bundle": lambda: verify_bundle(path),
      "serve (watcher)": lambda: BundleWatcher(path),
      "add_items": lambda: update.add_items(path, np.ones((1, tamper.D), np.float32), ["x"]),
      "remove_items": lambda: update.remove_items(path, ["item-1"]),
  }
  for name, call in entries.items():
    with pytest.raises(BundleError, match="scann_docids.pkl: a pickle file"):
      call()
    assert not (tmp_path / tamper.CANARY_NAME).exists(), name
  done = _cli("bundle", "verify", str(path))
  assert done.returncode == 1 and "a pickle file" in done.stderr, done.stderr
  assert not (tmp_path / tamper.CANARY_NAME).exists()


def _cli(*args):
  code = "import sys; from mmrec import cli; cli.main(['mmrec', *sys.argv[1:]])"
  return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                        timeout=120)


def test_bundle_verify_command(bases, tmp_path):
  done = _cli("bundle", "verify", str(bases["tree_ah"]))
  assert done.returncode == 0, done.stderr
  assert "ok: format 3" in done.stdout and "400 items x 8" in done.stdout
  assert "match their SHA-256" in done.stdout
  path = tmp_path / "bundle"
  shutil.copytree(bases["tree_ah"], path)
  tamper._flip("scann/dataset.npy", -5)(path)
  load_bundle(path)  # a flipped mantissa bit: structurally fine, only the hash can tell
  done = _cli("bundle", "verify", str(path))
  assert done.returncode == 1
  assert done.stderr.strip() == (f"mmrec bundle verify: {path}/scann/dataset.npy: SHA-256 "
                                 "does not match manifest.json (corrupt or modified)")
  done = _cli("bundle", "verify", str(tmp_path / "none"))
  assert done.returncode == 1 and "bundle directory does not exist" in done.stderr


def test_serve_refuses_a_tampered_bundle_at_start_up(bases, tmp_path):
  from mmrec.serving import server
  path = tmp_path / "bundle"
  shutil.copytree(bases["brute_force"], path)
  tamper._flip("scann/dataset.npy", -5)(path)
  with pytest.raises(BundleError, match="dataset.npy: SHA-256 does not match"):
    server.create_app(path)
  done = _cli("serve", f"--bundle={path}", "--port=0")
  assert done.returncode != 0 and "SHA-256 does not match" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("layout", ["pointer", "plain"])
def test_an_export_killed_at_any_step_leaves_a_loadable_bundle(tmp_path, layout):
  runs = killing.run_kills(tmp_path, layout)
  assert len(runs) >= 5 and all(r["killed"] for r in runs), runs
  assert all(r["loads"] in ("old", "new") for r in runs), runs
  assert runs[0]["loads"] == "old" and runs[-1]["loads"] == "new"  # both sides were hit
  leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("kill-")]
  assert not leftovers


def test_fault_summary_rows():
  rows = tamper.fault_summary()
  assert {r["fault"] for r in rows} == {t.fault for t in tamper.TAMPERS}
  assert sum(r["cases"] for r in rows) == len(tamper.TAMPERS)
  for row in rows:
    assert row["ok"] and row["area"] == "bundle" and row["outcome"] == "refused with message"
    assert row["example"] and os.sep in row["example"]  # names the file
