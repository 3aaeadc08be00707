"""Self-supervised pretraining of the item tower's text and image encoders.

Objectives (weights in `config.pretrain.weights`; any with weight > 0 run together):
  text_mlm           BERT-style masked-token prediction over the item text (title + description);
  image_contrastive  NT-Xent between two augmented views of each product image (SimCLR);
  image_text         sigmoid contrastive loss between an item's image and its text (SigLIP).
Batches are items (grain, a pure function of seed and step); masking and
augmentation run on device from the step's key. Training goes through
`mmrec.training.loop.fit`: the same mesh, optax, Orbax checkpoints, resume and logging
as the two-tower. WORKDIR holds config.json and tokenizer.json beside checkpoints/.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmrec import losses
from mmrec.data import augment, sources
from mmrec.data.pipeline import ItemTable
from mmrec.data.schema import RecDataset
from mmrec.files import copy_atomic, write_text_atomic
from mmrec.data.tokenizer import Tokenizer
from mmrec.models.image import ImageEncoder
from mmrec.models.text import TextEncoder
from mmrec.training import mesh as mesh_lib
from mmrec.training.checkpoint import CheckpointError, Checkpointer, one_line
from mmrec.training.loop import LossFn, fit
from mmrec.training.optim import make_optimizer

OBJECTIVES = ("text_mlm", "image_contrastive", "image_text")
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"


def _weights(config: ml_collections.ConfigDict) -> dict[str, float]:
  weights = dict(config.pretrain.weights)
  if unknown := sorted(set(weights) - set(OBJECTIVES)):
    raise ValueError(f"pretrain.weights has unknown objectives {unknown}; known: {OBJECTIVES}")
  if not any(weights.get(o, 0.0) > 0 for o in OBJECTIVES):
    raise ValueError(f"pretrain.weights={weights}: give at least one objective a weight > 0")
  return {o: float(weights.get(o, 0.0)) for o in OBJECTIVES}


class PretrainModel(nnx.Module):
  """The encoders (named `text` and `image` as in the item tower) and the objectives' heads."""

  def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    w, p = _weights(config), config.pretrain
    use_text = w["text_mlm"] > 0 or w["image_text"] > 0
    use_image = w["image_contrastive"] > 0 or w["image_text"] > 0
    mlm, simclr, siglip = (w[o] > 0 for o in OBJECTIVES)
    vocab = config.data.vocab_size
    self.text = (TextEncoder(vocab, config.data.max_text_len, **config.model.text, rngs=rngs)
                 if use_text else None)
    self.image = ImageEncoder(config.model.image.channels, rngs=rngs) if use_image else None
    width = self.text.width if use_text else 0
    feat = self.image.out_features if use_image else 0
    # MLM: BERT's head (dense, GELU, LayerNorm), then the tied token embedding and a bias.
    self.mlm_dense = nnx.Linear(width, width, rngs=rngs) if mlm else None
    self.mlm_norm = nnx.LayerNorm(width, rngs=rngs) if mlm else None
    self.mlm_bias = nnx.Param(jnp.zeros((vocab,))) if mlm else None
    # NT-Xent: SimCLR's projection MLP.
    self.image_head_in = nnx.Linear(feat, feat, rngs=rngs) if simclr else None
    self.image_head_out = nnx.Linear(feat, p.projection_dim, rngs=rngs) if simclr else None
    # SigLIP: linear projections to a shared space, learnable temperature (log) and bias.
    self.text_proj = nnx.Linear(width, p.projection_dim, rngs=rngs) if siglip else None
    self.image_proj = nnx.Linear(feat, p.projection_dim, rngs=rngs) if siglip else None
    self.log_temperature = (nnx.Param(jnp.asarray(np.log(p.siglip_init_temperature), jnp.float32))
                            if siglip else None)
    self.bias = nnx.Param(jnp.asarray(p.siglip_init_bias, jnp.float32)) if siglip else None

  def mlm_logits(self, tokens: jax.Array) -> jax.Array:
    """[B, L] (masked) tokens -> [B, L, V] logits over the vocabulary."""
    h = jax.nn.gelu(self.mlm_dense(self.text.sequence(tokens)))
    return self.text.tokens.attend(self.mlm_norm(h)) + self.mlm_bias[...]

  def image_projection(self, features: jax.Array) -> jax.Array:
    return self.image_head_out(jax.nn.gelu(self.image_head_in(features)))


def mask_tokens(key: jax.Array, tokens: jax.Array, *, mask_id: int, special_ids: tuple[int, ...],
                vocab_size: int, rate: float = 0.15) -> tuple[jax.Array, jax.Array]:
  """BERT masking: `rate` of the non-special tokens are chosen; of those 80% become
  [MASK], 10% a random token, 10% stay. Returns (inputs, weights: 1.0 where chosen).

  `vocab_size` is the tokenizer's; a random draw that lands on a special token
  keeps the original token instead.
  """
  u = jax.random.uniform(key, (3, *tokens.shape))  # one draw: each call compiles a generator
  specials = jnp.asarray(special_ids, tokens.dtype)
  chosen = ~jnp.isin(tokens, specials) & (u[0] < rate)
  kind = u[1]
  random_ids = jnp.minimum((u[2] * vocab_size).astype(tokens.dtype), vocab_size - 1)
  random_ids = jnp.where(jnp.isin(random_ids, specials), tokens, random_ids)
  inputs = jnp.where(chosen & (kind < 0.8), mask_id, tokens)
  inputs = jnp.where(chosen & (kind >= 0.8) & (kind < 0.9), random_ids, inputs)
  return inputs, chosen.astype(jnp.float32)


def pretrain_loss(config: ml_collections.ConfigDict, tokenizer: Tokenizer) -> LossFn:
  """The weighted sum of the enabled objectives; metrics per objective under `NAME/`."""
  w, p = _weights(config), config.pretrain
  special = (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id,
             tokenizer.mask_id)
  aug = dict(p.augment)

  def loss_fn(model: PretrainModel, batch: dict, key: jax.Array):
    k_mask, k_view1, k_view2 = jax.random.split(key, 3)
    total, metrics = 0.0, {}

    def add(name, result):
      nonlocal total
      loss, m = result
      total = total + w[name] * loss
      metrics.update({f"{name}/{k}": v for k, v in m.items()})

    if w["text_mlm"] > 0:
      inputs, weights = mask_tokens(k_mask, batch["tokens"], mask_id=tokenizer.mask_id,
                                    special_ids=special, vocab_size=tokenizer.vocab_size,
                                    rate=p.mask_rate)
      add("text_mlm", losses.masked_token_cross_entropy(model.mlm_logits(inputs),
                                                        batch["tokens"], weights))
    if model.image is not None:
      view1 = model.image(augment.augment(k_view1, batch["image"], **aug))
    if w["image_contrastive"] > 0:
      view2 = model.image(augment.augment(k_view2, batch["image"], **aug))
      add("image_contrastive", losses.nt_xent(model.image_projection(view1),
                                              model.image_projection(view2),
                                              temperature=p.nt_xent_temperature))
    if w["image_text"] > 0:
      add("image_text", losses.sigmoid_contrastive(
          model.image_proj(view1), model.text_proj(model.text(batch["tokens"])),
          model.log_temperature[...], model.bias[...]))
      metrics["image_text/temperature"] = jnp.exp(model.log_temperature[...])
      metrics["image_text/bias"] = model.bias[...]
    metrics["loss"] = total
    return total, metrics

  return loss_fn


def item_batches(items: ItemTable, *, batch_size: int, seed: int, rows: np.ndarray | None = None,
                 process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """An endless, per-epoch reshuffled MapDataset of item batches (tokens, image); `ds[step]`.

  `rows`: the items to draw from (default: the whole catalog).
  """
  rows = np.arange(len(items.tokens)) if rows is None else np.asarray(rows)

  def make_batch(index: np.ndarray) -> dict[str, np.ndarray]:
    return {"tokens": items.tokens[rows[index]], "image": items.image[rows[index]]}

  ds = grain.MapDataset.range(len(rows))[process_index::process_count]
  if len(ds) < batch_size:
    raise ValueError(f"{len(ds)} items per process is less than one batch "
                     f"(train.batch_size={batch_size * process_count} over {process_count} processes)")
  return ds.shuffle(seed=seed).repeat().batch(batch_size, drop_remainder=True).map(make_batch)


@dataclasses.dataclass
class Pretrained:
  model: PretrainModel
  data: RecDataset
  items: ItemTable
  step: int


def save_run_files(config: ml_collections.ConfigDict, tokenizer_path: str | pathlib.Path,
                   workdir: pathlib.Path) -> None:
  """config.json and tokenizer.json in WORKDIR, so its checkpoints are self-describing."""
  if jax.process_index() != 0:
    return
  write_text_atomic(workdir / CONFIG_FILE, config.to_json_best_effort(indent=2))
  copy_atomic(tokenizer_path, workdir / TOKENIZER_FILE)


def pretrain(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
             on_log: Callable[[int, dict], None] | None = None) -> Pretrained:
  """Pretrains the encoders on the configured dataset's catalog (resumes from WORKDIR)."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data = sources.load(config.data, workdir)
  tokenizer = sources.tokenizer(data, config.data)  # the dataset's, or data.tokenizer
  save_run_files(config, sources.tokenizer_path(data, config.data), workdir)
  items = sources.item_table(data, config.data)
  model = PretrainModel(config, rngs=nnx.Rngs(config.seed))
  mesh = mesh_lib.make_mesh(config.mesh)
  which = config.pretrain.get("items", "all")
  if which not in ("all", "warm"):
    raise ValueError(f"pretrain.items={which!r}: choose 'all' or 'warm'")
  rows = np.flatnonzero(~data.is_cold) if which == "warm" else None
  batches = item_batches(items, batch_size=mesh_lib.check_batch_size(config.train.batch_size, mesh),
                         seed=config.seed, rows=rows, process_index=jax.process_index(),
                         process_count=jax.process_count())
  step = fit(model, pretrain_loss(config, tokenizer), batches, config, workdir, on_log)
  return Pretrained(model, data, items, step)


def restore(workdir: str | pathlib.Path, step: int | None = None
            ) -> tuple[PretrainModel, ml_collections.ConfigDict, int]:
  """The pretraining model of `workdir` at `step` (default: latest), its config and step."""
  workdir = pathlib.Path(workdir)
  if not (workdir / CONFIG_FILE).exists():
    raise FileNotFoundError(f"{workdir}: not a pretraining workdir (no {CONFIG_FILE})")
  try:
    config = ml_collections.ConfigDict(json.loads((workdir / CONFIG_FILE).read_text()))
  except (ValueError, TypeError, UnicodeDecodeError) as e:  # a JSON object, else one line
    raise CheckpointError(f"{workdir / CONFIG_FILE} is damaged ({one_line(e)})") from e
  if "pretrain" not in config:
    raise ValueError(f"{workdir / CONFIG_FILE}: not a pretraining config (no 'pretrain' field)")
  model = PretrainModel(config, rngs=nnx.Rngs(config.seed))
  optimizer = nnx.Optimizer(model, make_optimizer(config.train), wrt=nnx.Param)
  ckpt = Checkpointer(workdir / "checkpoints", every=1, keep=config.train.keep_checkpoints,
                      read_only=True)
  try:
    restored = ckpt.restore(nnx.state((model, optimizer)), step)
  finally:
    ckpt.close()
  if restored is None:
    raise CheckpointError(f"no checkpoint in {workdir / 'checkpoints'}: pretrain first")
  step, state, _ = restored
  nnx.update((model, optimizer), state)
  return model, config, step


def probe(config: ml_collections.ConfigDict, run: Pretrained) -> dict[str, dict[str, float]]:
  """Linear-probe accuracies of the run's frozen encoders and of the same encoders at init.

  Returns {"random init": {...}, config.name: {...}}, keys "ATTRIBUTE/FEATURES"
  (see mmrec.evaluation.probe.linear_probe). Attributes the catalog lacks are skipped.
  """
  from mmrec.evaluation import probe as probe_lib
  attributes = run.data.catalog.attributes
  labels = {a: attributes[a] for a in config.probe.attributes if a in attributes}
  if not labels:
    raise ValueError(f"probe.attributes={list(config.probe.attributes)}: the catalog has none of "
                     f"them (it has {sorted(attributes)})")
  initial = PretrainModel(config, rngs=nnx.Rngs(config.seed))
  out = {}
  for name, model in (("random init", initial), (config.name, run.model)):
    features = probe_lib.encoder_features(model.text, model.image, run.items.tokens,
                                          run.items.image)
    out[name] = probe_lib.linear_probe(features, labels, test_share=config.probe.test_share,
                                       seed=config.seed)
  return out
