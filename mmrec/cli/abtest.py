"""`mmrec abtest`: the simulated A/B test on the embedded shop."""

from __future__ import annotations

import pathlib

from mmrec.cli.common import run_config
from mmrec.cli.config import UsageError
from mmrec.cli.registry import AB_SEED, ARM_A, ARM_B, SLATE, WORKDIR, command
from mmrec.cli.start import start


@command("abtest", uses=("config", "workdir", "arm-a", "arm-b", "slate", "ab-seed"),
         checks_first=True, example="mmrec abtest --workdir runs/x --arm-a popularity "
         "--arm-b bundle:beta=0")
def _abtest():
  """Simulated A/B test on the embedded shop: its users, split at random between two arms,
  click and convert by the shop's own choice model; writes WORKDIR/abtest.json
  (docs/evaluation.md)."""
  from mmrec.evaluation import abtest
  workdir = pathlib.Path(WORKDIR.value)
  try:
    arms = [abtest.parse_arm(spec, workdir / "bundle") for spec in (ARM_A.value, ARM_B.value)]
  except ValueError as e:
    raise UsageError(str(e)) from e
  for arm in arms:
    if arm.kind == "bundle" and not (pathlib.Path(arm.bundle) / "manifest.json").is_file():
      raise UsageError(f"no bundle in {arm.bundle}; export one first: mmrec export "
                       f"--workdir {workdir}")
  if SLATE.value < 1:
    raise UsageError(f"--slate={SLATE.value} must be at least 1")
  config = run_config()
  start()
  try:
    result = abtest.run_in_workdir(config, workdir, *arms, k=SLATE.value, seed=AB_SEED.value)
  except ValueError as e:
    raise UsageError(str(e)) from e
  print(abtest.markdown(result))
  return f"results in {workdir / 'abtest.json'}"
