"""Start the item tower's text and image encoders from pretrained weights (and `load_bert`:
a new text encoder from a BERT-family checkpoint, with its tokenizer).

`config.model.warm_start` (mmrec/configs/two_tower.py):
  checkpoint  a pretraining WORKDIR (`mmrec pretrain`): both encoders from its latest
              checkpoint (or `step`), each only if that run trained it;
  text        overrides the text encoder's source: a pretraining WORKDIR, a BERT-family
              checkpoint directory (config.json, *.safetensors, tokenizer.json), or "minilm";
  image       overrides the image encoder's source: a pretraining WORKDIR;
  step        the pretraining step to read (0: the latest).
The text encoder's tokenizer must be the dataset's (same vocabulary), or the
token ids would mean other words. Freezing and the encoders' learning rate are
`train.freeze_encoders_steps` and `train.encoder_lr_scale` (mmrec.training.optim.make_optimizer).
"""

from __future__ import annotations

import pathlib

import jax
import ml_collections
from flax import nnx

from mmrec.data.tokenizer import Tokenizer
from mmrec.models import import_bert
from mmrec.models.text import TextEncoder
from mmrec.models.towers import TwoTower
from mmrec.training import pretrain

PARTS = ("text", "image")


def copy_params(source: nnx.Module, target: nnx.Module, what: str) -> None:
  """Copies every parameter of `source` into `target`; they must match in paths and shapes."""
  src = dict(nnx.to_flat_state(nnx.state(source, nnx.Param)))
  dst = dict(nnx.to_flat_state(nnx.state(target, nnx.Param)))
  problems = [f"{'/'.join(map(str, p))}: only in the source" for p in src.keys() - dst.keys()]
  problems += [f"{'/'.join(map(str, p))}: only in the model" for p in dst.keys() - src.keys()]
  problems += [f"{'/'.join(map(str, p))}: source {src[p].shape}, model {dst[p].shape}"
               for p in src.keys() & dst.keys() if src[p].shape != dst[p].shape]
  if problems:
    raise ValueError(f"{what} does not fit the model (set model.text / model.image as in the "
                     "pretraining config):\n  " + "\n  ".join(sorted(problems)))
  nnx.update(target, nnx.state(source, nnx.Param))


def _same_vocabulary(path_a: str | pathlib.Path, path_b: str | pathlib.Path | None) -> bool:
  if path_b is None:
    return False
  return Tokenizer.load(path_a).tokenizer.get_vocab() == Tokenizer.load(path_b).tokenizer.get_vocab()


def _is_pretrain_workdir(path: str) -> bool:
  return (pathlib.Path(path) / "checkpoints").is_dir()


def sources_of(cfg: ml_collections.ConfigDict) -> dict[str, tuple[str, str]]:
  """Encoder name -> (the config field naming its source, the path), for the configured ones."""
  out = {part: ("checkpoint", cfg.checkpoint) for part in PARTS if cfg.get("checkpoint")}
  out.update({part: (part, cfg[part]) for part in PARTS if cfg.get(part)})
  return out


def check_sources(cfg: ml_collections.ConfigDict) -> None:
  """Cheap checks of `config.model.warm_start` before any data or model is built: each
  source is a pretraining workdir, or (text only) a BERT checkpoint directory or "minilm"."""
  for part, (field, path) in sources_of(cfg).items():
    if _is_pretrain_workdir(path):
      continue
    if part == "text" and field == "text":
      try:
        import_bert.checkpoint_dir(path)
      except FileNotFoundError as e:
        raise FileNotFoundError(f"model.warm_start.text={path!r}: not a pretraining workdir "
                                f"(no checkpoints/) nor a BERT checkpoint ({e})") from e
      continue
    raise FileNotFoundError(f"model.warm_start.{field}={path!r} is not a pretraining workdir "
                            "(no checkpoints/ directory)")


def warm_start(model: TwoTower, cfg: ml_collections.ConfigDict,
               tokenizer_path: str | pathlib.Path | None) -> dict[str, str]:
  """Loads the configured encoders into `model.item_tower` in place.

  Args:
    cfg: `config.model.warm_start`.
    tokenizer_path: the dataset's tokenizer.json (checked against the source's).
  Returns:
    encoder name -> a description of where it now comes from.
  """
  check_sources(cfg)
  tower = model.item_tower
  restored: dict[str, tuple] = {}
  report = {}
  for part, (field, path) in sources_of(cfg).items():
    target = getattr(tower, part, None)
    if target is None:
      report[part] = f"skipped: the model has no {part} encoder (model.use_{part}=False)"
      continue
    if _is_pretrain_workdir(path):
      if path not in restored:
        restored[path] = pretrain.restore(path, cfg.get("step") or None)
      pre_model, _, step = restored[path]
      source = getattr(pre_model, part)
      if source is None:
        if field == part:
          raise ValueError(f"model.warm_start.{part}={path!r}: that run did not train a "
                           f"{part} encoder")
        report[part] = f"kept random: {path} did not train a {part} encoder"
        continue
      if part == "text" and not _same_vocabulary(pathlib.Path(path) / pretrain.TOKENIZER_FILE,
                                                 tokenizer_path):
        raise ValueError(f"{path}/{pretrain.TOKENIZER_FILE} differs from the dataset's tokenizer "
                         f"{tokenizer_path}: pretrain on the same data config")
      copy_params(source, target, f"the {part} encoder of {path} (step {step})")
      report[part] = f"{path} step {step}"
    elif part == "text" and field == "text":
      if not _same_vocabulary(import_bert.checkpoint_dir(path) / "tokenizer.json", tokenizer_path):
        raise ValueError(f"model.warm_start.text={path!r}: its tokenizer.json differs from the "
                         f"dataset's {tokenizer_path}; build the dataset with that tokenizer")
      import_bert.import_into(target, path)
      report[part] = f"imported {path}"
  if jax.process_index() == 0:
    for part, origin in report.items():
      print(f"warm start: {part} encoder <- {origin}")
  return report


def load_tokenizer(path: str | pathlib.Path) -> Tokenizer:
  """The checkpoint's tokenizer.json."""
  return Tokenizer.load(import_bert.checkpoint_dir(path) / "tokenizer.json")


def load_bert(path: str | pathlib.Path, max_len: int = 0) -> tuple[TextEncoder, Tokenizer]:
  """A TextEncoder with the checkpoint's architecture and weights, and its tokenizer.

  max_len: the longest input to expect (0: all the checkpoint's positions).
  """
  options = import_bert.text_options(path)
  tokenizer = load_tokenizer(path)
  if tokenizer.vocab_size > options["vocab_size"] or tokenizer.pad_id != options["pad_id"]:
    raise ValueError(f"{path}: tokenizer.json ({tokenizer.vocab_size} tokens, [PAD]="
                     f"{tokenizer.pad_id}) does not fit config.json (vocab_size="
                     f"{options['vocab_size']}, pad_token_id={options['pad_id']})")
  vocab_size = options.pop("vocab_size")
  encoder = TextEncoder(vocab_size, max_len or options["max_positions"], **options,
                        rngs=nnx.Rngs(0))
  import_bert.import_into(encoder, path)
  return encoder, tokenizer
