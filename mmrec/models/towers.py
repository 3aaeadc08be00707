"""Two towers: an item tower fusing text, image and ID; a user tower over history."""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmrec.models.image import ImageEncoder
from mmrec.models.text import PAD_ID, TextEncoder
from mmrec.models.transformer import Encoder, masked_mean


_HASH_MULTIPLIERS = (2654435761, 2246822519)  # Knuth's and xxHash's 32-bit primes


def hash_ids(ids: jax.Array, buckets: int, seed: int = 0) -> jax.Array:
  """Multiplicative hash of non-negative int ids into [0, buckets)."""
  h = ids.astype(jnp.uint32) * jnp.uint32(_HASH_MULTIPLIERS[seed])
  return ((h ^ (h >> 15)) % jnp.uint32(buckets)).astype(jnp.int32)


class HashedEmbed(nnx.Module):
  """ID embedding with the hashing trick: the sum of two hashed rows of one table,
  so two ids share their whole embedding only if both hashes collide. `exact`: one
  row per id instead, with no collisions; ids from `buckets` on embed as zeros."""

  def __init__(self, buckets: int, width: int, *, exact: bool = False, rngs: nnx.Rngs):
    self.buckets, self.exact = buckets, exact
    self.table = nnx.Embed(buckets, width, embedding_init=nnx.initializers.normal(0.02), rngs=rngs)

  def __call__(self, ids: jax.Array) -> jax.Array:
    if self.exact:  # ids past the table (items added after training) get zeros
      seen = (ids < self.buckets)[..., None].astype(jnp.float32)
      return self.table(jnp.clip(ids, 0, self.buckets - 1)) * seen
    return sum(self.table(hash_ids(ids, self.buckets, s)) for s in range(len(_HASH_MULTIPLIERS)))


def l2_normalize(x: jax.Array) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum((x * x).sum(-1, keepdims=True), 1e-12))


def item_dim(cfg: ml_collections.ConfigDict) -> int:
  """Width of item and user embeddings: `embed_dim`, plus one coordinate with
  `item_bias` (the item's learned bias; the user's is 1, so the dot product adds it)."""
  return cfg.embed_dim + int(bool(cfg.get("item_bias", False)))


def with_bias_coordinate(user: jax.Array) -> jax.Array:
  """A user embedding [B, D] -> [B, D + 1] whose last coordinate is 1."""
  return jnp.concatenate([user, jnp.ones((*user.shape[:-1], 1), user.dtype)], axis=-1)


# rows x table size up to which a gather-and-sum runs as one dense matmul (token bags,
# profile sums): fast gradients on CPU, where a gather's gradient is a slow scatter-add
DENSE_MAX = 64_000_000


class TokenBag(nnx.Module):
  """Bag of tokens: the mean of the item text's token embeddings (pad tokens left out).
  Cheap enough to train end to end against the whole catalog at every step."""

  def __init__(self, vocab_size: int, width: int, pad_id: int = PAD_ID, *, rngs: nnx.Rngs):
    self.pad_id = pad_id
    self.tokens = nnx.Embed(vocab_size, width, embedding_init=nnx.initializers.normal(0.02),
                            rngs=rngs)

  def __call__(self, tokens: jax.Array, vocab: jax.Array | None = None) -> jax.Array:
    """`vocab` [U], for a whole catalog (`compact_vocabulary`): `tokens` then index
    `vocab`, with U as padding, and only those U rows of the table are read."""
    table, pad = self.tokens.embedding[...], self.pad_id
    if vocab is not None:
      table, pad = table[vocab], vocab.shape[0]
    valid = tokens != pad
    if tokens.shape[0] * table.shape[0] > DENSE_MAX:
      return masked_mean(jnp.take(table, tokens, axis=0, mode="clip"), valid)
    # The same mean as one matmul of the [N, vocab] bag weights with the table: its
    # gradient is a matmul too, where a gather's is a scatter-add (slow on CPU).
    weights = (valid / jnp.maximum(valid.sum(1, keepdims=True), 1)).astype(table.dtype)
    rows = jnp.broadcast_to(jnp.arange(tokens.shape[0])[:, None], tokens.shape)
    bag = jnp.zeros((tokens.shape[0], table.shape[0]), table.dtype).at[rows, tokens].add(
        weights, mode="drop")
    return bag @ table


BAG_KEYS = ("bag_tokens", "bag_vocab")  # batch keys of a catalog's compact token bag


def compact_vocabulary(tokens: np.ndarray, pad_id: int = PAD_ID) -> dict[str, np.ndarray]:
  """A catalog's tokens [N, L] as indices into the ids it uses (BAG_KEYS): the bag over the
  whole catalog at every step then multiplies [N, U] weights, not [N, vocab_size] (the small
  shop uses 1,376 of its 4,000 ids)."""
  vocab = np.unique(tokens[tokens != pad_id]).astype(np.int32)
  compact = np.searchsorted(vocab, tokens).astype(np.int32)
  compact[tokens == pad_id] = len(vocab)
  return {"bag_tokens": compact, "bag_vocab": vocab}


class FeatureStats(nnx.Variable):
  """Per-dimension standardisation of a frozen encoder's outputs [2, F]: row 0 the
  catalog mean, row 1 the scale 1 / (std sqrt(F)) (unit norm on average; std floored). Identity
  (0, 1) until fitted: random-init CNN features share a large common component
  that, fed raw to the fusion, crowds every item into one direction (docs/quality.md)."""


def feature_stats(features: np.ndarray) -> np.ndarray:
  """FeatureStats values fitted to `features` [N, F] (the whole catalog)."""
  x = np.asarray(features, np.float64)
  std = x.std(0)  # floored: a dimension constant over the catalog is not blown up
  scale = 1.0 / (np.maximum(std, 1e-2 * std.mean() + 1e-12) * np.sqrt(x.shape[1]))
  return np.stack([x.mean(0), scale]).astype(np.float32)


def _identity_stats(width: int) -> FeatureStats:
  return FeatureStats(jnp.stack([jnp.zeros(width), jnp.ones(width)]))


class ItemTower(nnx.Module):
  """Item features -> embedding (L2-normalised when `cfg.normalize`).

  Each enabled modality is projected to `embed_dim`; the concatenation goes
  through a LayerNorm and a GELU MLP (`fusion="mlp"`) or one linear map
  (`fusion="linear"`: the item is then linear in its features). With `cfg.item_bias` the MLP has one more output, the item's
  bias, kept out of the normalisation (`item_dim`): a popularity the item's ID
  and content predict, so cosines need not encode it. The ID path is multiplied by `id_keep` so that cold items
  (and, in training, a random share of warm ones) are embedded from content.
  Modalities: `use_text` (the Transformer `TextEncoder`), `use_bag` (a `TokenBag`
  over the same tokens), `use_image`, `use_id`.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, vocab_size: int, max_text_len: int,
               id_buckets: int, *, exact: bool = False, rngs: nnx.Rngs):
    d = cfg.embed_dim
    self.use_text, self.use_image, self.use_id = cfg.use_text, cfg.use_image, cfg.use_id
    self.use_bag, self.normalize = cfg.get("use_bag", False), cfg.get("normalize", True)
    self.bias = bool(cfg.get("item_bias", False))
    if not (self.use_text or self.use_bag or self.use_image or self.use_id):
      raise ValueError("model: enable at least one of use_text, use_bag, use_image, use_id")
    parts = 0
    if self.use_bag:
      self.bag = TokenBag(vocab_size, d, rngs=rngs)
      parts += 1
    if self.use_text:
      self.text = TextEncoder(vocab_size, max_text_len, **cfg.text, rngs=rngs)
      self.text_proj = nnx.Linear(self.text.width, d, rngs=rngs)
      self.text_stats = _identity_stats(self.text.width)
      parts += 1
    if self.use_image:
      self.image = ImageEncoder(cfg.image.channels, rngs=rngs)
      self.image_proj = nnx.Linear(self.image.out_features, d, rngs=rngs)
      self.image_stats = _identity_stats(self.image.out_features)
      parts += 1
    if self.use_id:
      self.ids = HashedEmbed(id_buckets, d, exact=exact, rngs=rngs)
      parts += 1
    self.fusion = cfg.get("fusion", "mlp")
    if self.fusion == "linear":
      self.linear = nnx.Linear(parts * d, item_dim(cfg), rngs=rngs)
    elif self.fusion == "mlp":
      self.norm = nnx.LayerNorm(parts * d, rngs=rngs)
      self.mlp_in = nnx.Linear(parts * d, 2 * d, rngs=rngs)
      self.mlp_out = nnx.Linear(2 * d, item_dim(cfg), rngs=rngs)
    else:
      raise ValueError(f"model.fusion={self.fusion!r}: choose 'mlp' or 'linear'")
    if self.bias:  # the bias starts at zero: no random per-item offset before training
      out = self.linear if self.fusion == "linear" else self.mlp_out
      out.kernel[...] = out.kernel[...].at[:, -1].set(0.0)

  def __call__(self, item: jax.Array, tokens: jax.Array, image: jax.Array, id_keep: jax.Array,
               encoded: Mapping[str, jax.Array] | None = None) -> jax.Array:
    """`encoded`: outputs of frozen encoders ("text" [B, W], "image" [B, F]), read instead
    of running those encoders (see `encode_all`), and a catalog's compact bag (BAG_KEYS)."""
    return self.fuse(list(self.modality_parts(item, tokens, image, id_keep, encoded).values()))

  def modality_parts(self, item, tokens, image, id_keep, encoded=None) -> dict[str, jax.Array]:
    """Each enabled modality's projected input [B, embed_dim], by name ("bag", "text",
    "image", "id"), in the order `fuse` concatenates them (explanations vary them)."""
    encoded = encoded or {}
    parts = {}
    if self.use_bag:
      parts["bag"] = (self.bag(encoded["bag_tokens"], encoded["bag_vocab"])
                      if "bag_vocab" in encoded else self.bag(tokens))
    if self.use_text:
      text = encoded["text"] if "text" in encoded else self.text(tokens)
      parts["text"] = self.text_proj(self.standardized("text", text))
    if self.use_image:
      pixels = encoded["image"] if "image" in encoded else self.image(image)
      parts["image"] = self.image_proj(self.standardized("image", pixels))
    if self.use_id:
      parts["id"] = self.ids(item) * id_keep[:, None].astype(jnp.float32)
    return parts

  def standardized(self, part: str, features: jax.Array) -> jax.Array:
    """An encoder's outputs through its FeatureStats (identity unless fitted)."""
    stats = getattr(self, f"{part}_stats")[...]
    return (features - stats[0]) * stats[1]

  def fuse(self, parts: list[jax.Array]) -> jax.Array:
    """The item embedding from the modality parts (`modality_parts`' order)."""
    x = jnp.concatenate(parts, axis=-1)
    if self.fusion == "linear":
      x = self.linear(x)
    else:
      x = self.mlp_out(jax.nn.gelu(self.mlp_in(self.norm(x))))
    if not self.normalize:
      return x
    if self.bias:
      return jnp.concatenate([l2_normalize(x[..., :-1]), x[..., -1:]], axis=-1)
    return l2_normalize(x)


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


class ProfileTower(nnx.Module):
  """A user's whole profile (a set of items, order ignored) -> user embedding.

  Each item of the profile is a projection of its item-tower embedding, plus its own
  ID embedding unless `user.use_ids` is False (free per-item rows that overfit a
  sparse catalog: docs/quality.md); their sum over the profile, scaled by 1/sqrt(size) as
  Mult-VAE normalises its input, plus a learned prior (what an empty profile gets),
  goes through a two-layer tanh MLP, or a linear map when `user.mlp_dim` is 0
  (Mult-DAE's input dropout is the training objective's: `profile_batches`). The output is L2-normalised when
  `cfg.normalize` (matching the item tower).
  """

  def __init__(self, cfg: ml_collections.ConfigDict, id_buckets: int, *, exact: bool = False,
               rngs: nnx.Rngs):
    u = cfg.user
    self.normalize = cfg.get("normalize", True)
    self.bias, self.exact = bool(cfg.get("item_bias", False)), exact
    self.ids = (HashedEmbed(id_buckets, u.width, exact=exact, rngs=rngs)
                if u.get("use_ids", True) else None)
    self.from_items = nnx.Linear(item_dim(cfg), u.width, rngs=rngs)
    self.prior = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (u.width,)))
    # mlp_dim 0: linear (the score is then a low-rank item-item model, as EASE is full-rank)
    self.mlp_in = nnx.Linear(u.width, u.mlp_dim, rngs=rngs) if u.mlp_dim else None
    self.proj = nnx.Linear(u.mlp_dim or u.width, cfg.embed_dim, rngs=rngs)

  def __call__(self, history: jax.Array, history_mask: jax.Array,
               history_items: jax.Array) -> jax.Array:
    """history_items: [B, H, D] item-tower embeddings of the history (treated as constants
    unless the caller passes them with a gradient, as full-catalog training does)."""
    m = history_mask[..., None].astype(history_items.dtype)
    id_sum = (self.ids(history) * m).sum(1) if self.ids is not None else 0.0
    return self.from_sums(id_sum, (history_items * m).sum(1), m.sum(1))

  def from_catalog(self, history: jax.Array, history_mask: jax.Array,
                   catalog: jax.Array) -> jax.Array:
    """The same users from the whole catalog [N, D] (exact ids only): the history's sums
    as matmuls of its [B, N] counts, whose gradients are matmuls too (a gather's is a
    scatter-add, slow on CPU)."""
    b, n = history.shape[0], catalog.shape[0]
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], history.shape)
    counts = jnp.zeros((b, n), catalog.dtype).at[rows, history].add(
        history_mask.astype(catalog.dtype))
    id_sum = (counts @ self.ids.table.embedding[...][:n]  # exact: row j is item j
              if self.ids is not None else 0.0)
    return self.from_sums(id_sum, counts @ catalog, counts.sum(1, keepdims=True))

  def from_sums(self, id_sum: jax.Array, item_sum: jax.Array, count: jax.Array) -> jax.Array:
    """Users from their history's summed ID rows and item embeddings, and its size [B, 1]."""
    # pooled before the (linear) projection: B x D x W work instead of B x H x D x W
    summed = (id_sum + self.from_items(item_sum)
              + (count - 1) * self.from_items.bias[...])  # = sum over h of from_items(v_h)
    x = summed * jax.lax.rsqrt(jnp.maximum(count, 1.0)) + self.prior[...]  # the user of no items
    x = self.proj(x if self.mlp_in is None else jnp.tanh(self.mlp_in(x)))
    x = l2_normalize(x) if self.normalize else x
    return with_bias_coordinate(x) if self.bias else x


class UserTower(nnx.Module):
  """History of items -> L2-normalised user embedding.

  Each history item is its own ID embedding plus a projection of its cached
  item-tower embedding (so the user tower sees what the items are, from their
  content, not only which they are). A learned summary token is prepended to
  the recency-ordered history, so users with an empty history still get an
  embedding; its output is the user.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, history_len: int, id_buckets: int,
               *, exact: bool = False, rngs: nnx.Rngs):
    u = cfg.user
    init = nnx.initializers.normal(0.02)
    self.bias = bool(cfg.get("item_bias", False))
    self.ids = HashedEmbed(id_buckets, u.width, exact=exact, rngs=rngs)
    self.from_items = nnx.Linear(item_dim(cfg), u.width, rngs=rngs)
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
    user = l2_normalize(self.proj(self.encoder(x, mask)[:, 0]))
    return with_bias_coordinate(user) if self.bias else user


class TwoTower(nnx.Module):
  def __init__(self, cfg: ml_collections.ConfigDict, *, num_items: int, vocab_size: int,
               max_text_len: int, history_len: int, rngs: nnx.Rngs):
    exact = not cfg.id_buckets  # 0: one row per item; > 0: hashed into that many rows
    buckets = cfg.id_buckets or num_items
    self.item_tower = ItemTower(cfg, vocab_size, max_text_len, buckets, exact=exact, rngs=rngs)
    kind = cfg.user.get("kind", "sequence")
    if kind not in USER_TOWERS:
      raise ValueError(f"model.user.kind={kind!r}: choose from {sorted(USER_TOWERS)}")
    self.user_tower = (ProfileTower(cfg, buckets, exact=exact, rngs=rngs) if kind == "profile"
                       else UserTower(cfg, history_len, buckets, exact=exact, rngs=rngs))
    self.item_cache = ItemCache(jnp.zeros((num_items, item_dim(cfg)), jnp.float32))

  def embed_items(self, batch: dict, id_keep: jax.Array) -> jax.Array:
    encoded = {part: batch[key] for part, key in ENCODED_KEYS.items() if key in batch}
    encoded.update({key: batch[key] for key in BAG_KEYS if key in batch})
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

  def embed_users(self, batch: dict, catalog: jax.Array | None = None) -> jax.Array:
    """Users from their histories; the history items' embeddings come from `catalog`
    [N, D] when given (full-catalog training, with gradient), else the item cache."""
    table = self.item_cache[...] if catalog is None else catalog
    tower, history = self.user_tower, batch["history"]
    if (catalog is not None and isinstance(tower, ProfileTower) and tower.exact
        and history.shape[0] * catalog.shape[0] <= DENSE_MAX):
      return tower.from_catalog(history, batch["history_mask"], catalog)
    return tower(history, batch["history_mask"], table[history])


USER_TOWERS = ("sequence", "profile")  # model.user.kind: UserTower, ProfileTower
