"""`pip install` of the built wheel (and of a checkout) into a fresh venv: `mmrec` runs
from an empty directory outside the repo, with a packaged config.

No download: the fresh venv sees this environment's packages through a .pth file (a
directory of links to them, without this checkout's editable mmrec), and pip installs
with --no-index, so the wheel's dependency pins must hold in this environment.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(*args, cwd=None, timeout=300):
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  out = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                       env=env, timeout=timeout)
  assert out.returncode == 0, f"{args}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
  return out


def _source_copy(dest: pathlib.Path) -> pathlib.Path:
  """What a checkout builds from, copied (the build writes build/ and *.egg-info beside it)."""
  dest.mkdir()
  shutil.copytree(REPO / "mmrec", dest / "mmrec", ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(REPO / name, dest / name)
  return dest


def _fresh_venv(path: pathlib.Path, deps: pathlib.Path) -> pathlib.Path:
  """A venv without pip whose site-packages also reads `deps`; returns its bin/."""
  run(sys.executable, "-m", "venv", "--without-pip", path)
  site = next((path / "lib").glob("python3*/site-packages"))
  (site / "deps.pth").write_text(f"{deps}\n")
  return path / "bin"


@pytest.fixture(scope="module")
def deps(tmp_path_factory) -> pathlib.Path:
  """Links to this environment's installed packages, less mmrec itself."""
  farm = tmp_path_factory.mktemp("deps")
  for entry in pathlib.Path(sysconfig.get_paths()["purelib"]).iterdir():
    if not entry.name.startswith(("mmrec", "__editable__", "distutils-precedence")):
      (farm / entry.name).symlink_to(entry)
  return farm


def _pip_install(bin_dir: pathlib.Path, target: str) -> None:
  run(sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "-q",
      "--no-index", "--no-build-isolation", target)


def test_the_wheel_installs_and_runs_from_an_empty_directory(tmp_path, deps):
  src = _source_copy(tmp_path / "src")
  run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
      "-w", tmp_path / "wheels", src)
  wheel, = (tmp_path / "wheels").glob("mmrec-*.whl")
  bin_dir = _fresh_venv(tmp_path / "venv", deps)
  _pip_install(bin_dir, f"{wheel}[serve,lab]")
  empty = tmp_path / "empty"
  empty.mkdir()
  where = run(bin_dir / "python", "-c", "import mmrec; print(mmrec.__file__)", cwd=empty)
  assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout
  assert "data build" in run(bin_dir / "mmrec", "--help", cwd=empty).stdout
  out = run(bin_dir / "mmrec", "data", "build", "--config", "two_tower:tiny", "--workdir", "w",
            cwd=empty)
  assert (empty / "w" / "data" / "shop_tiny_seed0" / "meta.json").is_file()
  assert out.stdout.splitlines()[-1].startswith("mmrec data build: done in ")


def test_a_checkout_installs_with_its_extras(tmp_path, deps):
  src = _source_copy(tmp_path / "src")
  bin_dir = _fresh_venv(tmp_path / "venv", deps)
  _pip_install(bin_dir, f"{src}[serve,lab]")
  out = run(bin_dir / "mmrec", "serve", "--help", cwd=tmp_path)
  assert "--bundle" in out.stdout and "--config" not in out.stdout
  run(bin_dir / "python", "-c", "import fastapi_offline, prometheus_client", cwd=tmp_path)
