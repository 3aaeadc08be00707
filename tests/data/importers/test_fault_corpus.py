"""The fault corpus (fault_corpus.py) through every importer layout, several seeds: exactly
the valid rows and items are kept, every planted fault is counted under its reason at its
physical line, every file's records add up, and refusals name the file."""

import importlib.util
import pathlib
import sys

import pytest

_spec = importlib.util.spec_from_file_location(
    "_mmrec_fault_corpus", pathlib.Path(__file__).with_name("fault_corpus.py"))
fault_corpus = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fault_corpus
_spec.loader.exec_module(fault_corpus)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("layout", fault_corpus.LAYOUTS)
def test_faults_counted_valid_rows_kept(layout, seed, tmp_path):
  corpus, imported, problems = fault_corpus.run(layout, seed, tmp_path / "data")
  assert problems == []
  kinds = {f.kind for f in corpus.faults}
  assert {"missing id", "huge field"} <= kinds and len(kinds) >= 8  # the corpus is not empty
  assert len(corpus.rows) >= 25 and len(imported.user) == len(corpus.rows)


def test_check_sees_a_lost_row_and_a_miscounted_fault(tmp_path):
  """The check is not vacuous: a row lost or a fault under the wrong line is reported."""
  corpus, imported, problems = fault_corpus.run("hm", 0, tmp_path / "data")
  assert problems == []
  imported.user, imported.item = imported.user[1:], imported.item[1:]
  imported.timestamp = imported.timestamp[1:]
  examples = imported.report["interactions"]["examples"]
  reason = next(iter(examples))
  examples[reason] = [e + "0" for e in examples[reason]]  # line N becomes line N0
  found = fault_corpus.check(corpus, imported)
  assert [p[1] for p in found] == ["", reason] and "kept rows differ" in found[0][2]


def test_fault_summary_rows():
  rows = fault_corpus.fault_summary(seeds=(0,))
  assert {r["layout"] for r in rows} == set(fault_corpus.LAYOUTS)
  assert all(r["ok"] and r["cases"] >= 1 and r["example"] for r in rows), [
      r for r in rows if not r["ok"]]
  assert {r["outcome"] for r in rows} == {"counted", "repaired, counted", "refused with message"}
  hm = {r["fault"]: r for r in rows if r["layout"] == "hm"}
  assert hm["interactions: unbalanced quote"]["example"].startswith(
      "interactions: malformed_line: ")
  assert "transactions_train.csv line " in hm["interactions: unbalanced quote"]["example"]
  assert hm["images: decompression bomb"]["example"].startswith("images: oversized_pixels 1 (e.g.")
  refused = hm["missing required column"]["example"]
  assert refused.startswith("DIR/") and "'customer_id' (user id)" in refused
