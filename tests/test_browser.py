"""The retrieval explorer in a real JupyterLab, driven by headless Chromium.

Starts JupyterLab on a free localhost port with a token (copy of notebooks/04, tiny
settings through MMREC_NB_* variables, fresh Jupyter and browser profiles), runs all
cells, checks that the recommendation grids rendered, drags the beta slider a tenth
of its range and checks that the lists were redrawn. Screenshots of the explorer before and
after go to the test's temporary directory, and to docs/screenshots/ when
MMREC_UPDATE_SCREENSHOTS=1. Chromium comes from Debian (`make test` installs it).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = pathlib.Path("/usr/bin/chromium")
NOTEBOOK = "04_retrieval_explorer.ipynb"
DOC_SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
RUN_ALL_TIMEOUT_MS = 300_000
TRACEBACK = "Traceback (most recent call last)"  # how a failed cell's output starts
BETA_FRACTION = 0.1  # where the slider is dragged: a tenth of its range (beta 0.03)
LAB_SETTINGS = {  # no news or update checks; start the notebook's kernel without asking
    "apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "notebook-extension:tracker": {"autoStartDefaultKernel": True},
}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium (make test)")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
  """A JupyterLab server on 127.0.0.1 serving a copy of the explorer notebook: (url, token)."""
  root = tmp_path / "notebooks"
  root.mkdir()
  shutil.copy(ROOT / "notebooks" / NOTEBOOK, root / NOTEBOOK)  # the .ipynb alone: no pairing
  settings = tmp_path / "lab-settings" / "@jupyterlab"
  for plugin, values in LAB_SETTINGS.items():
    extension, name = plugin.split(":")
    (settings / extension).mkdir(parents=True, exist_ok=True)
    (settings / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
  port, token = free_port(), secrets.token_hex(16)
  env = os.environ | {
      "MMREC_NB_SIZE": "tiny", "MMREC_NB_STEPS": "20",
      "MMREC_NB_WORKDIR": str(tmp_path / "work"),
      "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
      "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
      "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
      "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
      "IPYTHONDIR": str(tmp_path / "ipython"),
  }
  log = open(tmp_path / "jupyterlab.log", "wb")
  server = subprocess.Popen(
      [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
       f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
       "--ServerApp.port_retries=0", "--LabApp.extension_manager=readonly",
       *(["--allow-root"] if os.geteuid() == 0 else [])],
      env=env, stdout=log, stderr=subprocess.STDOUT)
  url = f"http://127.0.0.1:{port}"
  try:
    deadline = time.monotonic() + 90
    while True:
      try:
        if httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code == 200:
          break
      except httpx.TransportError:
        pass
      if server.poll() is not None or time.monotonic() > deadline:
        raise RuntimeError(f"JupyterLab did not start:\n{(tmp_path / 'jupyterlab.log').read_text()}")
      time.sleep(0.5)
    yield url, token
  finally:
    server.terminate()
    try:
      server.wait(timeout=20)
    except subprocess.TimeoutExpired:
      server.kill()
      server.wait()
    log.close()


def rec_titles(page) -> list[str]:
  return page.locator(".mmrec-recs figcaption").all_inner_texts()


def wait_for_change(page, before: list[str], timeout_s: float) -> list[str]:
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    now = rec_titles(page)
    if now and now != before:
      return now
    page.wait_for_timeout(500)
  return rec_titles(page)


def pixels(png: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.int16)


def idle(page, timeout_ms: int) -> None:
  page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=timeout_ms)


def run_all_cells(page, timeout_ms: int) -> None:
  """Runs every cell from the Run menu; waits for the grids, or fails on a cell's error."""
  page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
  page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
  errors = page.locator(".jp-OutputArea-output", has_text=TRACEBACK)
  page.locator(".mmrec-recs img").or_(errors).first.wait_for(timeout=timeout_ms)
  assert errors.count() == 0, f"a cell failed:\n{errors.first.inner_text()[-3000:]}"
  idle(page, timeout_ms)


def drag(page, slider: str, fraction: float) -> None:
  """Drags the ipywidgets slider's handle to `fraction` of its track."""
  track = page.locator(f"{slider} .noUi-target").bounding_box()
  box = page.locator(f"{slider} .noUi-handle").bounding_box()
  y = box["y"] + box["height"] / 2
  page.mouse.move(box["x"] + box["width"] / 2, y)
  page.mouse.down()
  page.mouse.move(track["x"] + fraction * track["width"], y, steps=10)
  page.mouse.up()


def test_explorer_renders_and_follows_the_beta_slider(jupyterlab, tmp_path):
  from playwright.sync_api import TimeoutError as PlaywrightTimeout, sync_playwright

  url, token = jupyterlab
  update_docs = os.environ.get("MMREC_UPDATE_SCREENSHOTS") == "1"
  SCREENSHOTS = DOC_SCREENSHOTS if update_docs else tmp_path
  SCREENSHOTS.mkdir(parents=True, exist_ok=True)
  with sync_playwright() as p:
    browser = p.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
        args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1500})
    page = browser.new_page()
    try:
      page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
      page.locator(".jp-NotebookPanel").wait_for(timeout=60_000)
      select_kernel = page.locator(".jp-Dialog button", has_text="Select")
      try:  # asked when the kernel list arrives late, despite autoStartDefaultKernel
        select_kernel.first.click(timeout=5_000)
      except PlaywrightTimeout:
        pass
      idle(page, 60_000)
      page.keyboard.press("Control+b")  # fold the file browser away: room for the grids
      run_all_cells(page, RUN_ALL_TIMEOUT_MS)

      grids = page.locator(".mmrec-recs")
      assert grids.count() == 2
      assert all(g.locator("img").count() >= 5 for g in grids.all())
      query = page.locator(".mmrec-explorer input[type='text']")
      query.fill("scarf")
      query.press("Enter")
      page.locator(".mmrec-similar img").first.wait_for(timeout=60_000)
      idle(page, 60_000)
      explorer = page.locator(".mmrec-explorer")
      explorer.scroll_into_view_if_needed()
      before_titles, headings_before = rec_titles(page), grids.all_inner_texts()
      before_png = explorer.screenshot(path=str(SCREENSHOTS / "retrieval_explorer_before.png"))

      drag(page, ".mmrec-beta", BETA_FRACTION)
      readout = float(page.locator(".mmrec-beta .widget-readout").inner_text())
      after_titles = wait_for_change(page, before_titles, timeout_s=60)
      idle(page, 60_000)
      page.wait_for_timeout(500)
      headings_after = grids.all_inner_texts()
      after_png = explorer.screenshot(path=str(SCREENSHOTS / "retrieval_explorer_after.png"))
    except Exception:
      page.screenshot(path=str(tmp_path / "failure.png"))
      print(f"browser test failed; page screenshot in {tmp_path / 'failure.png'}, "
            f"server log in {tmp_path / 'jupyterlab.log'}")
      raise
    finally:
      browser.close()

  assert readout > 0, "the slider did not move"
  assert after_titles != before_titles, "the recommendations did not change with beta"
  assert len(after_titles) == len(before_titles)
  assert all("beta 0.000" in h for h in headings_before)
  assert all(f"beta {readout:.3f}" in h for h in headings_after)
  a, b = pixels(before_png), pixels(after_png)
  if a.shape == b.shape:
    assert (np.abs(a - b).sum(-1) > 0).mean() > 0.01, "the screenshots barely differ"
