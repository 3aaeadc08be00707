r"""Two-tower on a Cloud TPU v5p-128 (v5p:4x4x4): the large towers by default.

COMMAND: tools/tpu_launch.sh --name mmrec-v5p-128 --zone us-east5-a --type v5p-128 --version v2-alpha-tpuv5 --config tpu_configs/v5p_128.py --workdir /gcs/YOUR_BUCKET/runs/v5p-128

Check it on a CPU first: `mmrec compile --config tpu:v5p_128` (add `,large`, `,base` or `,tiny`
to pick the tower size); this file names the same config (`tpu_configs/v5p_128.py:tiny`).
"""

from mmrec.configs import tpu


def get_config(arg: str = ""):
  return tpu.get_config("v5p_128" + (f",{arg}" if arg else ""))
