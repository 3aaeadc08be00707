"""TextEncoder options (pre-LN default, BERT post-LN) against a numpy forward of its own weights."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.special
from flax import nnx

from mmrec.models.text import TextEncoder

BERT_OPTIONS = dict(max_positions=12, type_vocab_size=2, embed_norm=True, norm_first=False,
                    gelu_approximate=False, layer_norm_eps=1e-12)


def numpy_forward(p: dict, ids: np.ndarray, *, heads: int, norm_first: bool, approximate: bool,
                  eps: float, types: np.ndarray | None = None) -> np.ndarray:
  """Mean-pooled output computed from the parameter dict in float64 numpy."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  mask = ids != 0

  def norm(x, q):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * q["scale"] + q["bias"]

  def gelu(x):
    if approximate:
      return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + scipy.special.erf(x / np.sqrt(2)))

  def attention(x, q):
    q = q["attn"]
    qs, ks, vs = (np.einsum("btw,whd->bhtd", x, q[n]["kernel"]) + q[n]["bias"][None, :, None]
                  for n in ("query", "key", "value"))
    scores = qs @ ks.transpose(0, 1, 3, 2) / np.sqrt(qs.shape[-1])
    scores = np.where(mask[:, None, None, :], scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("bhtd,hdw->btw", probs @ vs, q["out"]["kernel"]) + q["out"]["bias"]

  def mlp(x, q):
    h = gelu(x @ q["mlp_in"]["kernel"] + q["mlp_in"]["bias"])
    return h @ q["mlp_out"]["kernel"] + q["mlp_out"]["bias"]

  x = p["tokens"]["embedding"][ids] + p["positions"][:ids.shape[1]]
  if "token_types" in p:
    x = x + p["token_types"][np.zeros_like(ids) if types is None else types]
  if "embed_norm" in p:
    x = norm(x, p["embed_norm"])
  for i in range(len(p["encoder"]["blocks"])):
    q = p["encoder"]["blocks"][i]
    if norm_first:
      x = x + attention(norm(x, q["norm1"]), q)
      x = x + mlp(norm(x, q["norm2"]), q)
    else:
      x = norm(x + attention(x, q), q["norm1"])
      x = norm(x + mlp(x, q), q["norm2"])
  if norm_first:
    x = norm(x, p["encoder"]["norm"])
  m = mask[..., None]
  return (x * m).sum(1) / m.sum(1)


def randomized(encoder: TextEncoder, seed: int = 0) -> TextEncoder:
  """Gives every parameter (LayerNorms and biases included) random values."""
  rng = np.random.default_rng(seed)
  state = nnx.state(encoder, nnx.Param)
  nnx.update(encoder, jax.tree.map(
      lambda a: (rng.normal(size=a.shape) * 0.3 + (a == 1) * 1.0).astype(np.float32), state))
  return encoder


IDS = np.array([[5, 9, 3, 7, 0, 0], [4, 4, 8, 2, 6, 1], [3, 0, 0, 0, 0, 0]], np.int32)


@pytest.mark.parametrize("options", [{}, BERT_OPTIONS], ids=["pre_ln_default", "bert_post_ln"])
def test_matches_numpy_forward(options):
  encoder = randomized(TextEncoder(10, 6, width=8, layers=2, heads=2, mlp_dim=16, **options,
                                   rngs=nnx.Rngs(0)))
  params = nnx.to_pure_dict(nnx.state(encoder, nnx.Param))
  expected = numpy_forward(params, IDS, heads=2, norm_first=options.get("norm_first", True),
                           approximate=options.get("gelu_approximate", True),
                           eps=options.get("layer_norm_eps", 1e-6))
  with jax.default_matmul_precision("highest"):
    got = np.asarray(encoder(IDS))
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # Padding is invisible: the same tokens without the trailing pads give the same output.
    np.testing.assert_allclose(np.asarray(encoder(IDS[:1, :4])), got[:1], atol=2e-5)


def test_token_types_change_the_sequence():
  encoder = randomized(TextEncoder(10, 6, width=8, layers=1, heads=2, mlp_dim=16, **BERT_OPTIONS,
                                   rngs=nnx.Rngs(0)))
  types = np.array([[0, 0, 1, 1, 0, 0]] * 3, np.int32)
  params = nnx.to_pure_dict(nnx.state(encoder, nnx.Param))
  with jax.default_matmul_precision("highest"):
    seq = np.asarray(encoder.sequence(IDS, types))
    default = np.asarray(encoder.sequence(IDS))
  np.testing.assert_allclose(default, np.asarray(encoder.sequence(IDS, np.zeros_like(IDS))),
                             atol=1e-6)
  assert not np.allclose(seq, default, atol=1e-3)
  pooled = (seq * (IDS != 0)[..., None]).sum(1) / (IDS != 0).sum(1, keepdims=True)
  np.testing.assert_allclose(
      pooled, numpy_forward(params, IDS, heads=2, norm_first=False, approximate=False,
                            eps=1e-12, types=types), atol=2e-5)


def test_default_parameters_are_unchanged():
  """Existing configs keep their parameter tree (and so their checkpoints)."""
  encoder = TextEncoder(10, 6, width=8, layers=1, heads=2, mlp_dim=16, rngs=nnx.Rngs(0))
  flat = {"/".join(map(str, k)): v.shape
          for k, v in nnx.to_flat_state(nnx.state(encoder, nnx.Param))}
  assert set(flat) == {
      "tokens/embedding", "positions", "encoder/norm/scale", "encoder/norm/bias",
      *(f"encoder/blocks/0/{m}/{p}" for m in ("norm1", "norm2", "mlp_in", "mlp_out")
        for p in (("scale", "bias") if m.startswith("norm") else ("kernel", "bias"))),
      *(f"encoder/blocks/0/attn/{m}/{p}" for m in ("query", "key", "value", "out")
        for p in ("kernel", "bias"))}
  assert flat["positions"] == (6, 8)


def test_position_limits():
  with pytest.raises(ValueError, match="max_positions=4 is shorter than max_len=6"):
    TextEncoder(10, 6, width=8, layers=1, heads=2, mlp_dim=16, max_positions=4, rngs=nnx.Rngs(0))
  encoder = TextEncoder(10, 4, width=8, layers=1, heads=2, mlp_dim=16, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="6 tokens exceed the 4 learned positions"):
    encoder(IDS)
  with pytest.raises(ValueError, match="not divisible"):
    TextEncoder(10, 4, width=9, layers=1, heads=2, mlp_dim=16, rngs=nnx.Rngs(0))
