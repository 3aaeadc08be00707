"""Two towers: an item tower fusing text, image and ID; a user tower over history."""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmrec.models.image import ImageEncoder
from mmrec.models.text import TextEncoder
from mmrec.models.transformer import Encoder


_HASH_MULTIPLIERS = (2654435761, 2246822519)  # Knuth's and xxHash's 32-bit primes


def hash_ids(ids: jax.Array, buckets: int, seed: int = 0) -> jax.Array:
  """Multiplicative hash of non-negative int ids into [0, buckets)."""
  h = ids.astype(jnp.uint32) * jnp.uint32(_HASH_MULTIPLIERS[seed])
  return ((h ^ (h >> 15)) % jnp.uint32(buckets)).astype(jnp.int32)


class HashedEmbed(nnx.Module):
  """ID embedding with the hashing trick: the sum of two hashed rows of one table,
  so two ids share their whole embedding only if both hashes collide."""

  def __init__(self, buckets: int, width: int, *, rngs: nnx.Rngs):
    self.buckets = buckets
    self.table = nnx.Embed(buckets, width, embedding_init=nnx.initializers.normal(0.02), rngs=rngs)

  def __call__(self, ids: jax.Array) -> jax.Array:
    return sum(self.table(hash_ids(ids, self.buckets, s)) for s in range(len(_HASH_MULTIPLIERS)))


def l2_normalize(x: jax.Array) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum((x * x).sum(-1, keepdims=True), 1e-12))


class ItemTower(nnx.Module):
  """Item features -> L2-normalised embedding.

  Each enabled modality is projected to `embed_dim`; the concatenation goes
  through an MLP. The ID path is multiplied by `id_keep` so that cold items
  (and, in training, a random share of warm ones) are embedded from content.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, vocab_size: int, max_text_len: int,
               id_buckets: int, *, rngs: nnx.Rngs):
    d = cfg.embed_dim
    self.use_text, self.use_image, self.use_id = cfg.use_text, cfg.use_image, cfg.use_id
    if not (self.use_text or self.use_image or self.use_id):
      raise ValueError("model: enable at least one of use_text, use_image, use_id")
    parts = 0
    if self.use_text:
      self.text = TextEncoder(vocab_size, max_text_len, **cfg.text, rngs=rngs)
      self.text_proj = nnx.Linear(self.text.width, d, rngs=rngs)
      parts += 1
    if self.use_image:
      self.image = ImageEncoder(cfg.image.channels, rngs=rngs)
      self.image_proj = nnx.Linear(self.image.out_features, d, rngs=rngs)
      parts += 1
    if self.use_id:
      self.ids = HashedEmbed(id_buckets, d, rngs=rngs)
      parts += 1
    self.norm = nnx.LayerNorm(parts * d, rngs=rngs)
    self.mlp_in = nnx.Linear(parts * d, 2 * d, rngs=rngs)
    self.mlp_out = nnx.Linear(2 * d, d, rngs=rngs)

  def __call__(self, item: jax.Array, tokens: jax.Array, image: jax.Array, id_keep: jax.Array,
               encoded: Mapping[str, jax.Array] | None = None) -> jax.Array:
    """`encoded`: outputs of frozen encoders ("text" [B, W], "image" [B, F]), read instead
    of running those encoders (see `encode_all`)."""
    encoded = encoded or {}
    parts = []
    if self.use_text:
      parts.append(self.text_proj(encoded["text"] if "text" in encoded else self.text(tokens)))
    if self.use_image:
      parts.append(self.image_proj(encoded["image"] if "image" in encoded else self.image(image)))
    if self.use_id:
      parts.append(self.ids(item) * id_keep[:, None].astype(jnp.float32))
    x = self.norm(jnp.concatenate(parts, axis=-1))
    return l2_normalize(self.mlp_out(jax.nn.gelu(self.mlp_in(x))))


@nnx.jit  # module level: compiled once per encoder and batch shape, not once per call
def _apply(encoder: nnx.Module, x: jax.Array) -> jax.Array:
  return encoder(x)


def encode_all(encoder: nnx.Module, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """`encoder` applied to every row of `inputs`, `batch_size` rows at a time -> numpy [N, F]."""
  n = len(inputs)
  padded = np.concatenate([inputs, np.zeros((-n % batch_size, *inputs.shape[1:]), inputs.dtype)])
  out = [np.asarray(jax.device_get(_apply(encoder, padded[i:i + batch_size])))
         for i in range(0, len(padded), batch_size)]
  return np.concatenate(out)[:n]


ENCODED_KEYS = {"text": "text_features", "image": "image_features"}  # batch keys of `encoded`


class ItemCache(nnx.Variable):
  """Item-tower embeddings of the whole catalog, refreshed during training (not trained)."""


class UserTower(nnx.Module):
  """History of items -> L2-normalised user embedding.

  Each history item is its own ID embedding plus a projection of its cached
  item-tower embedding (so the user tower sees what the items are, from their
  content, not only which they are). A learned summary token is prepended to
  the recency-ordered history, so users with an empty history still get an
  embedding; its output is the user.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, history_len: int, id_buckets: int,
               *, rngs: nnx.Rngs):
    u = cfg.user
    init = nnx.initializers.normal(0.02)
    self.ids = HashedEmbed(id_buckets, u.width, rngs=rngs)
    self.from_items = nnx.Linear(cfg.embed_dim, u.width, rngs=rngs)
    self.positions = nnx.Param(init(rngs.params(), (history_len + 1, u.width)))
    self.summary = nnx.Param(init(rngs.params(), (1, 1, u.width)))
    self.encoder = Encoder(u.width, u.layers, u.heads, u.mlp_dim, rngs=rngs)
    self.proj = nnx.Linear(u.width, cfg.embed_dim, rngs=rngs)

  def __call__(self, history: jax.Array, history_mask: jax.Array,
               history_items: jax.Array) -> jax.Array:
    """history_items: [B, H, D] item-tower embeddings of the history (treated as constants)."""
    b = history.shape[0]
    x = self.ids(history) + self.from_items(jax.lax.stop_gradient(history_items))
    x = jnp.concatenate([jnp.broadcast_to(self.summary[...], (b, 1, x.shape[-1])), x], axis=1)
    x = x + self.positions[: x.shape[1]]
    mask = jnp.concatenate([jnp.ones((b, 1), bool), history_mask], axis=1)
    return l2_normalize(self.proj(self.encoder(x, mask)[:, 0]))


class TwoTower(nnx.Module):
  def __init__(self, cfg: ml_collections.ConfigDict, *, num_items: int, vocab_size: int,
               max_text_len: int, history_len: int, rngs: nnx.Rngs):
    buckets = cfg.id_buckets or 2 * num_items
    self.item_tower = ItemTower(cfg, vocab_size, max_text_len, buckets, rngs=rngs)
    self.user_tower = UserTower(cfg, history_len, buckets, rngs=rngs)
    self.item_cache = ItemCache(jnp.zeros((num_items, cfg.embed_dim), jnp.float32))

  def embed_items(self, batch: dict, id_keep: jax.Array) -> jax.Array:
    encoded = {part: batch[key] for part, key in ENCODED_KEYS.items() if key in batch}
    return self.item_tower(batch["item"], batch["tokens"], batch["image"], id_keep, encoded)

  def embed_catalog(self, features: dict, chunk: int = 512) -> jax.Array:
    """Embeddings [N, D] of every item (ID path on warm items), `chunk` items at a time."""
    n = features["item"].shape[0]
    pad = -n % chunk
    count = (n + pad) // chunk  # explicit: -1 cannot be inferred for zero-size arrays (no images)
    chunks = jax.tree.map(
        lambda a: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        .reshape(count, chunk, *a.shape[1:]), features)
    out = jax.lax.map(lambda b: self.embed_items(b, b["warm"]), chunks)
    return out.reshape(-1, out.shape[-1])[:n]

  def refresh_item_cache(self, features: dict) -> None:
    self.item_cache[...] = self.embed_catalog(features)

  def embed_users(self, batch: dict) -> jax.Array:
    history_items = self.item_cache[...][batch["history"]]
    return self.user_tower(batch["history"], batch["history_mask"], history_items)
