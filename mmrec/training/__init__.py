"""The training stage: one loop for the two towers and for pretraining.

  loop.py        `fit`, the one loop (jit on a mesh, optax, Orbax, logging, early stopping)
  step.py        the jitted train step (mixed precision, gradient accumulation)
  optim.py       AdamW on a warm-up/cosine schedule; the encoders' own group
  objective.py   the two-tower's loss for `train.objective`
  two_tower.py   `train` / `restore`: the two-tower's data and model wired to the loop
  pretrain.py    self-supervised pretraining of the text and image encoders
  warm_start.py  the two-tower's encoders from pretrained weights
  checkpoint.py  verified Orbax checkpoints with fallback
  mesh.py        the device mesh and sharding rules; distributed.py: multi-host start-up
  compile.py     ahead-of-time compilation for a TPU topology
  scalar_log.py  TensorBoard scalars, on disk when logged
"""
