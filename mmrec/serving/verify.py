"""`mmrec bundle verify BUNDLE_DIR`: the full check of a bundle, checksums included.

`load_bundle` always checks a bundle's structure; hashing every file is left to
this check, to the exporter (which hashes what it wrote) and to `mmrec serve`
(at start-up and on every reload). numpy and scann only.
"""

from __future__ import annotations

import os
from typing import Any

from mmrec.serving.bundle import load_bundle


def verify_bundle(path: str | os.PathLike) -> dict[str, Any]:
  """Loads the bundle with every check and every SHA-256; raises `BundleError` naming the
  file or field at fault. Returns a summary of what was verified."""
  bundle = load_bundle(path, verify_checksums=True)
  files = bundle.manifest["files"]
  return {"path": str(path), "version_dir": str(bundle.path),
          "format_version": bundle.manifest["format_version"],
          "version": bundle.version, "num_items": bundle.num_items,
          "dimension": bundle.dimension, "scann_mode": bundle.manifest["scann"]["mode"],
          "files": len(files),
          "bytes": sum((bundle.path / name).stat().st_size for name in files)}


def summary_line(report: dict[str, Any]) -> str:
  where = report["path"] if report["path"] == report["version_dir"] else (
      f"{report['path']} (-> {report['version_dir']})")
  return (f"{where}: ok: format {report['format_version']}, version "
          f"{report['version']}, {report['num_items']} items x {report['dimension']}, ScaNN "
          f"{report['scann_mode']}; {report['files']} files "
          f"({report['bytes'] / 2**20:.1f} MiB) match their SHA-256")

