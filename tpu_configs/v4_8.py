r"""Two-tower on a Cloud TPU v4-8 (v4:2x2x1): the base towers by default.

COMMAND: tools/tpu_launch.sh --name mmrec-v4-8 --zone us-central2-b --type v4-8 --version tpu-ubuntu2204-base --config tpu_configs/v4_8.py --workdir /gcs/YOUR_BUCKET/runs/v4-8

Check it on a CPU first: `mmrec compile --config tpu_configs/v4_8.py` (add `:large`, `:base`
or `:tiny` to pick the tower size).
"""

from mmrec.configs import tpu


def get_config(arg: str = "base"):
  c = tpu.base_config(size=arg or "base", chip="v4", topology="v4:2x2x1", num_slices=1,
                      topology_kwargs=dict(chip_config_name="megacore",  # 1 device per chip
                                           chips_per_host_bounds=(2, 2, 1)))
  c.mesh.data, c.mesh.fsdp, c.mesh.model, c.mesh.slices = 1, 4, 1, 1
  c.train.batch_size = 4096  # global; each host reads batch_size / hosts
  return c
