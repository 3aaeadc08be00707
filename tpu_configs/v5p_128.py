r"""Two-tower on a Cloud TPU v5p-128 (v5p:4x4x4): the large towers by default.

COMMAND: tools/tpu_launch.sh --name mmrec-v5p-128 --zone us-east5-a --type v5p-128 --version v2-alpha-tpuv5 --config tpu_configs/v5p_128.py --workdir /gcs/YOUR_BUCKET/runs/v5p-128

Check it on a CPU first: `mmrec compile --config tpu_configs/v5p_128.py` (add `:large`, `:base`
or `:tiny` to pick the tower size).
"""

from mmrec.configs import tpu


def get_config(arg: str = "large"):
  c = tpu.base_config(size=arg or "large", chip="v5p", topology="v5p:4x4x4", num_slices=1,
                      topology_kwargs={})
  c.mesh.data, c.mesh.fsdp, c.mesh.model, c.mesh.slices = 1, 16, 4, 1
  c.train.batch_size = 32768  # global; each host reads batch_size / hosts
  # the large towers at 2048 examples per chip need ~110 GiB: 2 micro-batches (docs/scaling.md)
  c.train.grad_accum_steps = 2
  return c
