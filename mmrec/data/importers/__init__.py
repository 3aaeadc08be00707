"""Importers for public recommendation formats (see docs/data.md).

`read(format, path, options)` streams a directory of raw files into an
`Imported` (catalog, remapped interactions, counts of what was dropped);
`mmrec.data.importers.build.import_dataset` cleans it and writes the TFDS
dataset with its report. Formats: movielens (ml-100k, ml-1m, RecBole atomic),
recbole (atomic files), amazon (Amazon Reviews 2023), hm (H&M), generic.
"""

from __future__ import annotations

import pathlib

from mmrec.data.importers.base import Imported, Options
from mmrec.data.importers.drops import DataImportError

FORMATS = ("movielens", "recbole", "amazon", "hm", "generic")


def read(fmt: str, path: str | pathlib.Path, options: Options | None = None) -> Imported:
  """Reads the raw files of format `fmt` in directory `path`."""
  options = options or Options()
  if options.given_files and fmt in ("amazon", "hm"):
    raise DataImportError(f"data.protocol='given' (train, valid and test files) is read by the "
                          f"generic and recbole formats (and movielens as RecBole atomic files), "
                          f"not {fmt!r}")
  if fmt in ("movielens", "recbole"):
    from mmrec.data.importers import movielens
    reader = movielens.read_movielens if fmt == "movielens" else movielens.read_recbole
  elif fmt == "amazon":
    from mmrec.data.importers import amazon
    reader = amazon.read_amazon
  elif fmt == "hm":
    from mmrec.data.importers import hm
    reader = hm.read_hm
  elif fmt == "generic":
    from mmrec.data.importers import generic
    reader = generic.read_generic
  else:
    raise DataImportError(f"unknown import format {fmt!r}; choose from {list(FORMATS)}")
  return reader(path, options)


__all__ = ["FORMATS", "DataImportError", "Imported", "Options", "read"]
