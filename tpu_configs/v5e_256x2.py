r"""Two-tower on a Cloud TPU v5e-256 (v5e:16x16 x 2 slices): the large towers by default.

COMMAND: tools/tpu_launch.sh --name mmrec-v5e-256x2 --zone us-west4-a --type v5litepod-256 --version v2-alpha-tpuv5-lite --slices 2 --config tpu_configs/v5e_256x2.py --workdir /gcs/YOUR_BUCKET/runs/v5e-256x2

Check it on a CPU first: `mmrec compile --config tpu_configs/v5e_256x2.py` (add `:large`, `:base`
or `:tiny` to pick the tower size).
"""

from mmrec.configs import tpu


def get_config(arg: str = "large"):
  c = tpu.base_config(size=arg or "large", chip="v5e", topology="v5e:16x16", num_slices=2,
                      topology_kwargs={})
  c.mesh.data, c.mesh.fsdp, c.mesh.model, c.mesh.slices = 2, 64, 4, 2
  c.train.batch_size = 131072  # global; each host reads batch_size / hosts
  # 16 GiB chips: the large towers at 1024 examples per chip need ~57 GiB of temporaries;
  # 8 micro-batches (in-batch negatives: batch / 8, see docs/scaling.md); 4 needed 19.6 GiB
  c.train.grad_accum_steps = 8
  return c
