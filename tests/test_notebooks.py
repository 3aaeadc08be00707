"""Every notebook runs top to bottom on tiny settings; committed notebooks carry no outputs.

The notebooks share one tiny work directory, in order: 01 builds the shop, 03 trains and
exports the two models, 04 and 05 load their checkpoints and bundles (each would train
what is missing on its own). Parameters reach the kernels through MMREC_NB_* variables.
"""

from __future__ import annotations

import json
import pathlib

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("01_data_explorer", "02_pretrain", "03_train_two_tower", "04_retrieval_explorer",
             "05_evaluate")
TINY = {"MMREC_NB_SIZE": "tiny", "MMREC_NB_STEPS": "30", "MMREC_NB_PRETRAIN_STEPS": "20"}
CELL_TIMEOUT_S = 300


def load(name: str) -> nbformat.NotebookNode:
  return nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)


def execute(name: str, env: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
  """Runs the notebook in a fresh kernel (cwd notebooks/); a failing cell raises."""
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  nb = load(name)
  client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                          resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
                          store_widget_state=True)
  client.execute()
  return nb


@pytest.fixture(scope="module")
def tiny_env(tmp_path_factory) -> dict[str, str]:
  return TINY | {"MMREC_NB_WORKDIR": str(tmp_path_factory.mktemp("notebooks"))}


def widget_states(nb: nbformat.NotebookNode) -> list[dict]:
  state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
  return list(state.get("state", {}).values())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tiny_env, monkeypatch):
  nb = execute(name, tiny_env, monkeypatch)
  errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
  assert not errors
  if name == "04_retrieval_explorer":
    # The explorer drew image grids of recommendations into its HTML widgets.
    grids = [s["state"]["value"] for s in widget_states(nb)
             if "mmrec-recs" in s["state"].get("_dom_classes", ())]
    assert len(grids) == 2 and all(g.count("<img") >= 5 for g in grids)


STRIP = ("jupyter nbconvert --clear-output --inplace --ClearMetadataPreprocessor.enabled=True "
         "--ClearMetadataPreprocessor.preserve_cell_metadata_mask=tags "
         "--ClearMetadataPreprocessor.preserve_nb_metadata_mask=kernelspec "
         "--ClearMetadataPreprocessor.preserve_nb_metadata_mask=jupytext notebooks/*.ipynb")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_clean(name):
  """No outputs, execution counts or run metadata; a tagged parameters cell; in sync with its .py."""
  nb = load(name)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code, f"{name}.ipynb has no code cells"
  dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (
      c.outputs or c.execution_count is not None or set(c.metadata) - {"tags"})]
  assert not dirty, f"{name}.ipynb cells {dirty} hold outputs or run metadata; strip with {STRIP}"
  assert "widgets" not in nb.metadata, f"{name}.ipynb stores widget state; strip with {STRIP}"
  assert "parameters" in code[0].metadata.get("tags", []), \
      f"{name}.ipynb: the first code cell must be tagged 'parameters'"
  paired = jupytext.read(NOTEBOOKS_DIR / f"{name}.py")
  as_cells = lambda n: [(c.cell_type, c.source.strip()) for c in n.cells]  # noqa: E731
  assert as_cells(paired) == as_cells(nb), \
      f"{name}.py and {name}.ipynb differ: run `jupytext --sync notebooks/{name}.ipynb`"


def test_notebook_list_matches_directory():
  found = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
  assert found == sorted(NOTEBOOKS), f"notebooks/ holds {found}; update NOTEBOOKS"
  for name in NOTEBOOKS:
    json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())  # valid JSON
