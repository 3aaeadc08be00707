"""Text encoder: token + position (+ token type) embeddings, a Transformer, masked mean pooling.

The defaults are mmrec's small pre-LN encoder; the BERT family (BERT, MiniLM)
is `max_positions=512, type_vocab_size=2, embed_norm=True, norm_first=False,
gelu_approximate=False, layer_norm_eps=1e-12` (see `mmrec.models.import_bert`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mmrec.models.transformer import Encoder, masked_mean

PAD_ID = 0  # The default padding id; a TextEncoder reads its own from `pad_id`.


class TextEncoder(nnx.Module):
  """Args:
    vocab_size: rows of the token embedding.
    max_len: the longest input; the position table has `max_positions` rows
      (0: `max_len`), and must have at least `max_len`.
    width, layers, heads, mlp_dim: hidden size, depth, attention heads, MLP (intermediate) size.
    max_positions: learned absolute positions (0: `max_len`; BERT: 512).
    type_vocab_size: token type (segment) embeddings, 0 for none; inputs use type 0 by default.
    embed_norm: LayerNorm on the summed embeddings (BERT).
    norm_first: pre-LN blocks and a final LayerNorm (True) or post-LN blocks (False, BERT).
    gelu_approximate: tanh GELU (True) or exact erf GELU (False, BERT).
    layer_norm_eps: LayerNorm epsilon (BERT: 1e-12).
    pad_id: the padding token, masked out of attention and pooling.
  """

  def __init__(self, vocab_size: int, max_len: int, width: int, layers: int, heads: int,
               mlp_dim: int, *, max_positions: int = 0, type_vocab_size: int = 0,
               embed_norm: bool = False, norm_first: bool = True, gelu_approximate: bool = True,
               layer_norm_eps: float = 1e-6, pad_id: int = PAD_ID,
               rngs: nnx.Rngs):
    max_positions = max_positions or max_len
    if max_positions < max_len:
      raise ValueError(f"text encoder: max_positions={max_positions} is shorter than "
                       f"max_len={max_len} (data.max_text_len)")
    normal = nnx.initializers.normal(0.02)
    self.tokens = nnx.Embed(vocab_size, width, embedding_init=normal, rngs=rngs)
    self.positions = nnx.Param(normal(rngs.params(), (max_positions, width)))
    self.encoder = Encoder(width, layers, heads, mlp_dim, norm_first=norm_first,
                           gelu_approximate=gelu_approximate, layer_norm_eps=layer_norm_eps,
                           rngs=rngs)
    self.token_types = (nnx.Param(normal(rngs.params(), (type_vocab_size, width)))
                        if type_vocab_size else None)
    self.embed_norm = (nnx.LayerNorm(width, epsilon=layer_norm_eps, rngs=rngs)
                       if embed_norm else None)
    self.width, self.pad_id = width, pad_id
    # a tuple, not a dict: the module's static structure must be hashable (jit keys on it)
    self._options = tuple(dict(
        vocab_size=vocab_size, width=width, layers=layers, heads=heads, mlp_dim=mlp_dim,
        max_positions=max_positions, type_vocab_size=type_vocab_size, embed_norm=embed_norm,
        norm_first=norm_first, gelu_approximate=gelu_approximate,
        layer_norm_eps=layer_norm_eps).items())

  @property
  def options(self) -> dict:
    """The architecture options (as `mmrec.models.import_bert.text_options` reads them)."""
    return dict(self._options)

  def embed(self, tokens: jax.Array, token_types: jax.Array | None = None) -> jax.Array:
    """Summed (and, with `embed_norm`, normalised) input embeddings [B, L, W]."""
    if tokens.shape[1] > self.positions.shape[0]:
      raise ValueError(f"text encoder: {tokens.shape[1]} tokens exceed the "
                       f"{self.positions.shape[0]} learned positions")
    x = self.tokens(tokens) + self.positions[: tokens.shape[1]]
    if self.token_types is not None:
      types = self.token_types[...]
      x = x + (types[0] if token_types is None else jnp.take(types, token_types, axis=0))
    return self.embed_norm(x) if self.embed_norm is not None else x

  def sequence(self, tokens: jax.Array, token_types: jax.Array | None = None) -> jax.Array:
    """Per-token features [B, L, W] (used by masked-token pretraining)."""
    return self.encoder(self.embed(tokens, token_types), tokens != self.pad_id)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """tokens: int32 [B, L], padded with `pad_id` -> [B, W] mean-pooled sentence features."""
    return masked_mean(self.sequence(tokens), tokens != self.pad_id)
