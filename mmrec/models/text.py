"""Text encoder: token + position embeddings, a Transformer, masked mean pooling."""

import jax
import jax.numpy as jnp
from flax import nnx

from mmrec.models.transformer import Encoder, masked_mean

PAD_ID = 0


class TextEncoder(nnx.Module):
  def __init__(self, vocab_size: int, max_len: int, width: int, layers: int, heads: int,
               mlp_dim: int, *, rngs: nnx.Rngs):
    init = nnx.initializers.normal(0.02)
    self.tokens = nnx.Embed(vocab_size, width, embedding_init=init, rngs=rngs)
    self.positions = nnx.Param(init(rngs.params(), (max_len, width)))
    self.encoder = Encoder(width, layers, heads, mlp_dim, rngs=rngs)
    self.width = width

  def sequence(self, tokens: jax.Array) -> jax.Array:
    """Per-token features [B, L, W] (used by masked-token pretraining)."""
    x = self.tokens(tokens) + self.positions[: tokens.shape[1]]
    return self.encoder(x, tokens != PAD_ID)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """tokens: int32 [B, L], 0-padded -> [B, W] mean-pooled sentence features."""
    return masked_mean(self.sequence(tokens), tokens != PAD_ID)
