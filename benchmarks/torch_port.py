"""A PyTorch port of mmrec's default two-tower (profile recipe), for benchmarks/torch_step.py.

The same model as mmrec.models.towers (ItemTower + ProfileTower) and the same loss
as mmrec.losses.full_softmax, layer for layer, with the same parameter shapes;
`load_jax_params` copies a Flax NNX model's weights in, so both sides can be checked
to compute the same step. Written the way a PyTorch user would: the token bag is an
`nn.EmbeddingBag` (mean, pad excluded), which is faster on CPU than a masked mean.
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HASH_MULTIPLIERS = (2654435761, 2246822519)  # = mmrec.models.towers._HASH_MULTIPLIERS
MASKED = -1e9  # = mmrec.losses._MASKED
PAD_ID = 0  # = mmrec.models.text.PAD_ID
LAYER_NORM_EPS = 1e-6  # flax's default


def hash_ids(ids: torch.Tensor, buckets: int, seed: int) -> torch.Tensor:
  """mmrec.models.towers.hash_ids: uint32 multiply (mod 2**32), xor-shift, mod buckets."""
  h = (ids.long() * HASH_MULTIPLIERS[seed]) & 0xFFFFFFFF
  return (h ^ (h >> 15)) % buckets


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
  return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-12))


class HashedEmbed(nn.Module):
  """mmrec.models.towers.HashedEmbed: two hashed rows summed, or one row per id (exact)."""

  def __init__(self, buckets: int, width: int, exact: bool = False):
    super().__init__()
    self.buckets, self.exact = buckets, exact
    self.table = nn.Embedding(buckets, width)

  def rows(self, ids: torch.Tensor) -> torch.Tensor:
    """[B, H * hashes] table rows of ids [B, H] (the hashes side by side)."""
    if self.exact:
      return ids.clamp(0, self.buckets - 1)
    return torch.cat([hash_ids(ids, self.buckets, s) for s in range(len(HASH_MULTIPLIERS))], 1)

  def forward(self, ids: torch.Tensor) -> torch.Tensor:
    if self.exact:
      return self.table(self.rows(ids))
    return sum(self.table(hash_ids(ids, self.buckets, s)) for s in range(len(HASH_MULTIPLIERS)))


class ImageEncoder(nn.Module):
  """Parameters of mmrec.models.image.ImageEncoder. Frozen in the default recipe: the
  item tower reads its cached outputs, so only its weights (and their count) matter."""

  def __init__(self, channels: tuple[int, ...]):
    super().__init__()
    widths = (3, *channels)
    self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1)
                               for a, b in zip(widths[:-1], widths[1:]))
    self.norms = nn.ModuleList(nn.GroupNorm(min(8, b), b) for b in channels)
    self.out_features = 2 * widths[-1]


class ItemTower(nn.Module):
  def __init__(self, cfg: ml_collections.ConfigDict, vocab_size: int, id_buckets: int,
               exact: bool = False):
    super().__init__()
    d = cfg.embed_dim
    self.use_bag, self.use_image, self.use_id = cfg.use_bag, cfg.use_image, cfg.use_id
    self.normalize, self.bias = cfg.get("normalize", True), bool(cfg.get("item_bias", False))
    parts = 0
    if self.use_bag:
      self.bag = nn.Module()
      self.bag.tokens = nn.EmbeddingBag(vocab_size, d, mode="mean", padding_idx=PAD_ID)
      parts += 1
    if self.use_image:
      self.image = ImageEncoder(tuple(cfg.image.channels))
      self.image_proj = nn.Linear(self.image.out_features, d)
      parts += 1
    if self.use_id:
      self.ids = HashedEmbed(id_buckets, d, exact)
      parts += 1
    self.norm = nn.LayerNorm(parts * d, eps=LAYER_NORM_EPS)
    self.mlp_in = nn.Linear(parts * d, 2 * d)
    self.mlp_out = nn.Linear(2 * d, d + self.bias)  # + the item bias coordinate

  def forward(self, catalog: dict, id_keep: torch.Tensor) -> torch.Tensor:
    parts = [self.bag.tokens(catalog["tokens"])] if self.use_bag else []
    if self.use_image:
      parts.append(self.image_proj(catalog["image_features"]))
    if self.use_id:
      parts.append(self.ids(catalog["item"]) * id_keep[:, None].float())
    x = self.norm(torch.cat(parts, dim=-1))
    x = self.mlp_out(F.gelu(self.mlp_in(x), approximate="tanh"))  # jax.nn.gelu's default
    if not self.normalize:
      return x
    if self.bias:  # the bias coordinate stays outside the normalisation
      return torch.cat([l2_normalize(x[..., :-1]), x[..., -1:]], dim=-1)
    return l2_normalize(x)


class ProfileTower(nn.Module):
  """pool: how the masked sums over the history are taken. "gather" materialises the
  [B, H, D] gathers as the JAX model writes them; "bag" uses `F.embedding_bag` weighted
  by the mask, which never does (the same sums)."""

  POOLS = ("gather", "bag")

  def __init__(self, cfg: ml_collections.ConfigDict, id_buckets: int, pool: str = "gather",
               exact: bool = False):
    super().__init__()
    if pool not in self.POOLS:
      raise ValueError(f"pool={pool!r}: choose from {self.POOLS}")
    u = cfg.user
    self.normalize, self.pool = cfg.get("normalize", True), pool
    self.bias = bool(cfg.get("item_bias", False))
    self.ids = HashedEmbed(id_buckets, u.width, exact) if u.get("use_ids", True) else None
    self.from_items = nn.Linear(cfg.embed_dim + self.bias, u.width)
    self.prior = nn.Parameter(torch.zeros(u.width))
    self.mlp_in = nn.Linear(u.width, u.mlp_dim) if u.mlp_dim else None
    self.proj = nn.Linear(u.mlp_dim or u.width, cfg.embed_dim)

  def forward(self, history, history_mask, items) -> torch.Tensor:
    """items: [N, D] the catalog's embeddings (with gradient); history [B, H] indexes them."""
    m = history_mask.float()
    count = m.sum(1, keepdim=True)
    ids = 0.0
    if self.pool == "bag":
      if self.ids is not None:
        rows = self.ids.rows(history)
        ids = F.embedding_bag(rows, self.ids.table.weight, mode="sum",
                              per_sample_weights=m.repeat(1, rows.shape[1] // m.shape[1]))
      pooled = F.embedding_bag(history, items, mode="sum", per_sample_weights=m)
    else:
      if self.ids is not None:
        ids = (self.ids(history) * m[..., None]).sum(1)
      pooled = (items[history] * m[..., None]).sum(1)
    summed = ids + self.from_items(pooled) + (count - 1) * self.from_items.bias
    x = summed * torch.rsqrt(torch.clamp(count, min=1.0)) + self.prior
    x = self.proj(x if self.mlp_in is None else torch.tanh(self.mlp_in(x)))
    x = l2_normalize(x) if self.normalize else x
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1) if self.bias else x  # bias weight


def check_supported(config: ml_collections.ConfigDict) -> None:
  """The port covers the default profile recipe; anything else is refused by name, so a
  recipe change cannot be benchmarked against a port of the old model."""
  m, t = config.model, config.train
  unsupported = {
      "train.objective": (t.objective, "profile"), "model.user.kind": (m.user.kind, "profile"),
      "model.use_text": (m.use_text, False), "train.compute_dtype": (t.compute_dtype, "float32"),
      "train.grad_accum_steps": (t.grad_accum_steps, 1),
      "train.targets": (t.get("targets", "held_out"), "held_out"),
      "train.encoder_lr_scale": (t.encoder_lr_scale, 1.0),
      "train.freeze_encoders_steps": (t.freeze_encoders_steps, 0),
      "model.fusion": (m.get("fusion", "mlp"), "mlp")}
  if m.use_image:
    unsupported["train.frozen_encoders"] = (tuple(t.frozen_encoders), ("image",))
  bad = [f"{k}={v!r} (ported: {want!r})" for k, (v, want) in unsupported.items() if v != want]
  if bad:
    raise ValueError("benchmarks/torch_port.py ports the profile recipe only; update the port "
                     "for: " + ", ".join(bad))


class TwoTowerLoss(nn.Module):
  """mmrec.training.objective.two_tower_loss's profile objective: the whole catalog through the item
  tower (ID dropout on warm items), the users from their history items' embeddings
  (with gradient), a full softmax over warm items for the held-out targets."""

  def __init__(self, config: ml_collections.ConfigDict, num_items: int, pool: str = "gather"):
    super().__init__()
    check_supported(config)
    m = config.model
    exact, buckets = not m.id_buckets, m.id_buckets or num_items
    self.item_tower = ItemTower(m, config.data.vocab_size, buckets, exact)
    self.user_tower = ProfileTower(m, buckets, pool, exact)
    self.temperature, self.id_dropout = config.train.temperature, m.id_dropout
    self.average = config.train.get("loss_average", "user")
    if m.use_image:  # frozen (train.frozen_encoders): never updated
      self.item_tower.image.requires_grad_(False)

  def forward(self, batch: dict, catalog: dict, id_keep: torch.Tensor | None = None):
    warm = catalog["warm"]
    if id_keep is None:
      id_keep = warm & (torch.rand(warm.shape) >= self.id_dropout)
    items = self.item_tower(catalog, id_keep)
    users = self.user_tower(batch["history"], batch["history_mask"], items)
    logits = (users @ items.T / self.temperature).masked_fill(~warm[None, :], MASKED)
    picked = torch.gather(F.log_softmax(logits, dim=-1), 1, batch["targets"])
    mask = batch["target_mask"].float()
    has = (mask.sum(1) > 0).float()
    if self.average == "interaction":  # mmrec.losses.full_softmax's two averages
      loss = -(picked * mask).sum() / torch.clamp(mask.sum(), min=1.0)
    else:
      per_user = -(picked * mask).sum(1) / torch.clamp(mask.sum(1), min=1.0)
      loss = (per_user * has).sum() / torch.clamp(has.sum(), min=1.0)
    hit = ((logits.argmax(-1)[:, None] == batch["targets"]) & batch["target_mask"]).any(1)
    return loss, {"loss": loss.detach(),
                  "top1_hit": (hit * has).sum() / torch.clamp(has.sum(), min=1.0)}


def warmup_cosine(cfg: ml_collections.ConfigDict, step: int) -> float:
  """optax.warmup_cosine_decay_schedule(0, lr, warmup, max(steps, warmup + 1)) at `step`."""
  warmup, total = cfg.warmup_steps, max(cfg.steps, cfg.warmup_steps + 1)
  if step < warmup:
    return cfg.learning_rate * step / warmup
  progress = min(step - warmup, total - warmup) / (total - warmup)
  return cfg.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


class TrainStep:
  """One step as mmrec.training.step does it: loss, backward, clip the global gradient norm
  to train.grad_clip, AdamW (optax's defaults: b1 0.9, b2 0.999, eps 1e-8) at the
  warm-up/cosine learning rate. Frozen parameters get no update and no optimizer state."""

  def __init__(self, model: TwoTowerLoss, config: ml_collections.ConfigDict, fused: bool = True):
    self.model, self.cfg, self.step = model, config.train, 0
    self.params = [p for p in model.parameters() if p.requires_grad]
    kwargs = dict(lr=0.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=self.cfg.weight_decay)
    try:  # fused AdamW runs on CPU in recent PyTorch; foreach otherwise
      self.optimizer = torch.optim.AdamW(self.params, fused=fused, **kwargs)
    except (RuntimeError, ValueError):
      self.optimizer = torch.optim.AdamW(self.params, foreach=True, **kwargs)
    self.loss_fn = model

  def compile(self) -> None:
    self.loss_fn = torch.compile(self.model)

  def __call__(self, batch: dict, catalog: dict, id_keep: torch.Tensor | None = None) -> dict:
    self.optimizer.zero_grad(set_to_none=True)
    loss, metrics = self.loss_fn(batch, catalog, id_keep)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
    for group in self.optimizer.param_groups:
      group["lr"] = warmup_cosine(self.cfg, self.step)
    self.optimizer.step()
    self.step += 1
    return dict(metrics, grad_norm=grad_norm)


def tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
  """numpy inputs -> torch (int32 ids as int64, which torch's indexing wants)."""
  convert = lambda a: torch.from_numpy(a.astype(np.int64) if a.dtype == np.int32 else a)
  return {k: convert(np.ascontiguousarray(v)) for k, v in arrays.items()}


def torch_name(path) -> str:
  """A Flax NNX parameter path -> the name of the same parameter in this port."""
  keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
  leaf = {"kernel": "weight", "embedding": "weight", "scale": "weight"}.get(keys[-1], keys[-1])
  return ".".join(keys[:-1] + [leaf])


def load_jax_params(model: TwoTowerLoss, jax_params: list[tuple]) -> None:
  """Copy (path, array) pairs of a Flax NNX two-tower's nnx.Param state into `model`.
  Every parameter of each side must be matched by one of the other, shape for shape."""
  ours = dict(model.named_parameters())
  seen = set()
  for path, value in jax_params:
    name = torch_name(path)
    if name not in ours:
      raise KeyError(f"JAX parameter {name} has no counterpart in the PyTorch port")
    value = np.asarray(value)
    if value.ndim == 2 and name.endswith(".weight") and "kernel" in str(path[-1]):
      value = value.T  # Linear: [in, out] -> [out, in]
    elif value.ndim == 4:
      value = value.transpose(3, 2, 0, 1)  # Conv: HWIO -> OIHW
    if tuple(ours[name].shape) != value.shape:
      raise ValueError(f"{name}: JAX {value.shape} vs PyTorch {tuple(ours[name].shape)}")
    with torch.no_grad():
      ours[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
    seen.add(name)
  if missing := sorted(set(ours) - seen):
    raise KeyError(f"PyTorch parameters with no JAX counterpart: {missing}")
