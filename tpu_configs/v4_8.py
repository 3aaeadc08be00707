r"""Two-tower on a Cloud TPU v4-8 (v4:2x2x1): the base towers by default.

COMMAND: tools/tpu_launch.sh --name mmrec-v4-8 --zone us-central2-b --type v4-8 --version tpu-ubuntu2204-base --config tpu_configs/v4_8.py --workdir /gcs/YOUR_BUCKET/runs/v4-8

Check it on a CPU first: `mmrec compile --config tpu:v4_8` (add `,large`, `,base` or `,tiny`
to pick the tower size); this file names the same config (`tpu_configs/v4_8.py:tiny`).
"""

from mmrec.configs import tpu


def get_config(arg: str = ""):
  return tpu.get_config("v4_8" + (f",{arg}" if arg else ""))
