r"""Two-tower on a Cloud TPU v5e-16 (v5e:4x4): the base towers by default.

COMMAND: tools/tpu_launch.sh --name mmrec-v5e-16 --zone us-west4-a --type v5litepod-16 --version v2-alpha-tpuv5-lite --config tpu_configs/v5e_16.py --workdir /gcs/YOUR_BUCKET/runs/v5e-16

Check it on a CPU first: `mmrec compile --config tpu_configs/v5e_16.py` (add `:large`, `:base`
or `:tiny` to pick the tower size).
"""

from mmrec.configs import tpu


def get_config(arg: str = "base"):
  c = tpu.base_config(size=arg or "base", chip="v5e", topology="v5e:4x4", num_slices=1,
                      topology_kwargs={})
  c.mesh.data, c.mesh.fsdp, c.mesh.model, c.mesh.slices = 1, 16, 1, 1
  c.train.batch_size = 8192  # global; each host reads batch_size / hosts
  return c
