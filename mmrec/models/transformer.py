"""A pre-norm Transformer encoder stack shared by the text encoder and the user tower."""

import jax
import jax.numpy as jnp
from flax import nnx


class Block(nnx.Module):
  """Pre-LayerNorm self-attention + MLP block."""

  def __init__(self, width: int, heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(width, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs)
    self.norm2 = nnx.LayerNorm(width, rngs=rngs)
    self.mlp_in = nnx.Linear(width, mlp_dim, rngs=rngs)
    self.mlp_out = nnx.Linear(mlp_dim, width, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    """x: [B, T, W]; mask: bool [B, T], true on real tokens."""
    attn_mask = mask[:, None, None, :]  # [B, 1, 1, T]: every query sees the real keys
    x = x + self.attn(self.norm1(x), mask=attn_mask)
    return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.norm2(x))))


class Encoder(nnx.Module):
  def __init__(self, width: int, layers: int, heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
    self.blocks = nnx.List([Block(width, heads, mlp_dim, rngs=rngs) for _ in range(layers)])
    self.norm = nnx.LayerNorm(width, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    for block in self.blocks:
      x = block(x, mask)
    return self.norm(x)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over axis 1 of x [B, T, W] where mask [B, T] is true (zeros when none is)."""
  m = mask[..., None].astype(x.dtype)
  return (x * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
