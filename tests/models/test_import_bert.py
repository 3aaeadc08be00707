"""BERT import: parity with a numpy BERT written from the safetensors weights; clear errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import scipy.special
import tokenizers
from flax import nnx
from safetensors.numpy import load_file, save_file
from tokenizers import models, normalizers, pre_tokenizers, processors

from mmrec.configs import two_tower
from mmrec.data import sources
from mmrec.models import import_bert
from mmrec.models.text import TextEncoder
from mmrec.pretrained import minilm_path
from mmrec.training.warm_start import load_bert

SENTENCES = ["A red cotton shirt with long sleeves.",
             "Striped linen dress, light and soft for the summer!",
             "wool hat",
             "Café naïve ÉTÉ 2024: jackets & shirts"]


def reference_embeddings(tensors: dict, config: dict, ids: np.ndarray, mask: np.ndarray,
                         prefix: str = "") -> np.ndarray:
  """A plain BERT forward in float64 numpy (post-LN, exact GELU), mean-pooled over the mask."""
  t = {k[len(prefix):]: v.astype(np.float64) for k, v in tensors.items() if k.startswith(prefix)}
  eps, heads = config["layer_norm_eps"], config["num_attention_heads"]

  def norm(x, name):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * t[name + ".weight"] + t[name + ".bias"]

  def dense(x, name):
    return x @ t[name + ".weight"].T + t[name + ".bias"]

  b, n = ids.shape
  x = (t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:n]
       + t["embeddings.token_type_embeddings.weight"][0])
  x = norm(x, "embeddings.LayerNorm")
  bias = np.where(mask, 0.0, -1e9)[:, None, None, :]
  for i in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{i}."
    q, k, v = (dense(x, p + f"attention.self.{s}").reshape(b, n, heads, -1).transpose(0, 2, 1, 3)
               for s in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]) + bias
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, n, -1)
    x = norm(x + dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
    h = dense(x, p + "intermediate.dense")
    h = 0.5 * h * (1 + scipy.special.erf(h / np.sqrt(2)))
    x = norm(x + dense(h, p + "output.dense"), p + "output.LayerNorm")
  m = mask[..., None].astype(np.float64)
  return (x * m).sum(1) / m.sum(1)


@pytest.fixture(scope="module")
def minilm():
  path = minilm_path()
  with jax.default_matmul_precision("highest"):
    encoder, tokenizer = load_bert("minilm", max_len=32)
  return path, encoder, tokenizer


def test_minilm_matches_a_numpy_bert(minilm):
  path, encoder, tokenizer = minilm
  reference_tok = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
  reference_tok.enable_padding(pad_id=0)  # pad to the longest
  batch = reference_tok.encode_batch(SENTENCES)
  ids = np.array([e.ids for e in batch])
  mask = np.array([e.attention_mask for e in batch], bool)
  assert ids[0, 0] == 101 and 102 in ids[0]  # [CLS] ... [SEP] from MiniLM's own template
  # mmrec's tokenizer gives the same ids, padded further to 32.
  ours = tokenizer.encode(SENTENCES, max_len=32)
  np.testing.assert_array_equal(ours[:, :ids.shape[1]], ids)
  assert (ours[:, ids.shape[1]:] == 0).all()

  expected = reference_embeddings(load_file(path / "model.safetensors"),
                                  json.loads((path / "config.json").read_text()), ids, mask)
  with jax.default_matmul_precision("highest"):
    got = np.asarray(encoder(ours))
  error = np.abs(got - expected).max()
  print(f"MiniLM parity: max abs error {error:.2e}, "
        f"mean embedding norm {np.linalg.norm(expected, axis=1).mean():.2f}")
  assert error < 1e-4


def test_text_options_of_minilm():
  assert import_bert.text_options("minilm") == dict(
      vocab_size=30522, width=384, layers=6, heads=12, mlp_dim=1536, max_positions=512,
      type_vocab_size=2, embed_norm=True, norm_first=False, gelu_approximate=False,
      layer_norm_eps=1e-12, pad_id=0)


# A tiny random BERT checkpoint, saved with a `bert.` prefix and old gamma/beta names.
TINY = dict(vocab_size=12, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=16, max_position_embeddings=10, type_vocab_size=2,
            hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0, model_type="bert")
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "soft", "wool", "hat", "red", "##s",
              "a", "shirt"]


def tiny_tensors(seed=0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  w, m = TINY["hidden_size"], TINY["intermediate_size"]
  shapes = {"embeddings.word_embeddings.weight": (TINY["vocab_size"], w),
            "embeddings.position_embeddings.weight": (TINY["max_position_embeddings"], w),
            "embeddings.token_type_embeddings.weight": (2, w),
            "embeddings.LayerNorm.weight": (w,), "embeddings.LayerNorm.bias": (w,)}
  for i in range(TINY["num_hidden_layers"]):
    p = f"encoder.layer.{i}."
    for s in ("self.query", "self.key", "self.value", "output.dense"):
      shapes |= {f"{p}attention.{s}.weight": (w, w), f"{p}attention.{s}.bias": (w,)}
    shapes |= {f"{p}attention.output.LayerNorm.weight": (w,),
               f"{p}attention.output.LayerNorm.bias": (w,),
               f"{p}intermediate.dense.weight": (m, w), f"{p}intermediate.dense.bias": (m,),
               f"{p}output.dense.weight": (w, m), f"{p}output.dense.bias": (w,),
               f"{p}output.LayerNorm.weight": (w,), f"{p}output.LayerNorm.bias": (w,)}
  return {k: (rng.normal(size=s) * (0.1 if "LayerNorm" in k and "bias" in k else 0.5)
              + (1.0 if "LayerNorm.weight" in k else 0.0)).astype(np.float32)
          for k, s in shapes.items()}


def write_tiny(directory, tensors, config=TINY):
  directory.mkdir(exist_ok=True)
  old_names = {k: k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                           "LayerNorm.beta")
               for k in tensors}
  save_file({"bert." + old_names[k]: v for k, v in tensors.items()}
            | {"cls.predictions.bias": np.zeros(TINY["vocab_size"], np.float32)},
            directory / "model.safetensors")
  (directory / "config.json").write_text(json.dumps(config))
  tok = tokenizers.Tokenizer(models.WordPiece({t: i for i, t in enumerate(TINY_VOCAB)},
                                              unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
  tok.save(str(directory / "tokenizer.json"))
  return directory


def test_tiny_checkpoint_with_prefix_and_old_names(tmp_path):
  tensors = tiny_tensors()
  path = write_tiny(tmp_path / "tiny", tensors)
  encoder, tokenizer = load_bert(path)
  ids = tokenizer.encode(["soft red hats", "a shirt", "wool"], max_len=7)
  assert ids.tolist()[1] == [2, 10, 11, 3, 0, 0, 0]
  with jax.default_matmul_precision("highest"):
    got = np.asarray(encoder(ids))
  np.testing.assert_allclose(got, reference_embeddings(tensors, TINY, ids, ids != 0), atol=1e-5)


def test_import_into_an_encoder_with_fewer_positions(tmp_path):
  tensors = tiny_tensors(1)
  path = write_tiny(tmp_path / "tiny", tensors)
  options = import_bert.text_options(path)
  vocab_size, _ = options.pop("vocab_size"), options.pop("max_positions")
  encoder = TextEncoder(vocab_size, 6, **options, rngs=nnx.Rngs(3))
  import_bert.import_into(encoder, path)
  np.testing.assert_array_equal(encoder.positions[...],
                                tensors["embeddings.position_embeddings.weight"][:6])
  np.testing.assert_array_equal(encoder.encoder.blocks[1].mlp_out.kernel[...],
                                tensors["encoder.layer.1.output.dense.weight"].T)


def test_errors_name_the_problem(tmp_path):
  tensors = tiny_tensors()
  missing = write_tiny(tmp_path / "missing", {k: v for k, v in tensors.items()
                                              if k != "encoder.layer.1.attention.self.key.bias"})
  with pytest.raises(ValueError, match=r"'encoder.layer.1.attention.self.key.bias' is missing"):
    load_bert(missing)
  bad = tensors | {"encoder.layer.0.intermediate.dense.weight": np.zeros((8, 16), np.float32)}
  with pytest.raises(ValueError, match=r"'encoder.layer.0.intermediate.dense.weight' has shape "
                                       r"\(8, 16\), expected \(16, 8\)"):
    load_bert(write_tiny(tmp_path / "bad", bad))
  encoder = TextEncoder(12, 8, width=8, layers=2, heads=2, mlp_dim=16, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"norm_first: encoder True, checkpoint False"):
    import_bert.import_into(encoder, write_tiny(tmp_path / "ok", tensors))
  with pytest.raises(ValueError, match="hidden_act"):
    import_bert.text_options(write_tiny(tmp_path / "relu", tensors, TINY | {"hidden_act": "relu"}))
  with pytest.raises(FileNotFoundError, match="no config.json"):
    load_bert(tmp_path)


def test_minilm_variant_tokenizes_the_shop_and_its_encoder_imports(minilm, tiny_config, tmp_path):
  _, reference_encoder, _ = minilm
  cfg = two_tower.with_variant(tiny_config, "minilm")
  options = import_bert.text_options("minilm")
  assert dict(cfg.model.text) | {"vocab_size": 30522, "pad_id": 0} == options
  assert (cfg.data.tokenizer, cfg.model.warm_start.text) == ("minilm", "minilm")
  data = sources.load(cfg.data, tmp_path)
  tokens = sources.tokenizer(data, cfg.data).encode(data.catalog.text()[:3], cfg.data.max_text_len)
  assert (tokens[:, 0] == 101).all() and (tokens == 102).sum() == 3
  # The two-tower's text encoder, built from the config, then loaded as warm start does.
  encoder = TextEncoder(cfg.data.vocab_size, cfg.data.max_text_len, **cfg.model.text,
                        rngs=nnx.Rngs(1))
  import_bert.import_into(encoder, cfg.model.warm_start.text)
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(np.asarray(encoder(tokens)), np.asarray(reference_encoder(tokens)),
                               atol=1e-5)
  wrong = two_tower.get_config("tiny").data
  wrong.tokenizer = "minilm"  # MiniLM's tokenizer with the default vocab_size
  with pytest.raises(ValueError, match="30522 tokens, more than data.vocab_size=4000"):
    sources.tokenizer(data, wrong)
