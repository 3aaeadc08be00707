"""`mmrec demo`: the whole path on the embedded shop, end to end."""

from __future__ import annotations

from mmrec.cli.registry import CONFIG, WORKDIR, command


@command("demo", example="mmrec demo --workdir runs/demo   # or --config two_tower:tiny")
def _demo():
  """Build the shop, train multimodal and ID-only two-towers, evaluate, export, query."""
  from mmrec import demo
  demo.run(CONFIG.value, WORKDIR.value)
  return f"outputs in {WORKDIR.value}"
