r"""Two-tower on a Cloud TPU v5e-16 (v5e:4x4): the base towers by default.

COMMAND: tools/tpu_launch.sh --name mmrec-v5e-16 --zone us-west4-a --type v5litepod-16 --version v2-alpha-tpuv5-lite --config tpu_configs/v5e_16.py --workdir /gcs/YOUR_BUCKET/runs/v5e-16

Check it on a CPU first: `mmrec compile --config tpu:v5e_16` (add `,large`, `,base` or `,tiny`
to pick the tower size); this file names the same config (`tpu_configs/v5e_16.py:tiny`).
"""

from mmrec.configs import tpu


def get_config(arg: str = ""):
  return tpu.get_config("v5e_16" + (f",{arg}" if arg else ""))
