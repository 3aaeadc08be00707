r"""Two-tower on a Cloud TPU v5e-256 (v5e:16x16 x 2 slices): the large towers by default.

COMMAND: tools/tpu_launch.sh --name mmrec-v5e-256x2 --zone us-west4-a --type v5litepod-256 --version v2-alpha-tpuv5-lite --slices 2 --config tpu_configs/v5e_256x2.py --workdir /gcs/YOUR_BUCKET/runs/v5e-256x2

Check it on a CPU first: `mmrec compile --config tpu:v5e_256x2` (add `,large`, `,base` or `,tiny`
to pick the tower size); this file names the same config (`tpu_configs/v5e_256x2.py:tiny`).
"""

from mmrec.configs import tpu


def get_config(arg: str = ""):
  return tpu.get_config("v5e_256x2" + (f",{arg}" if arg else ""))
