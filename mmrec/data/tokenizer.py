"""WordPiece tokenizer for the item text (`tokenizers` library, saved as tokenizer.json).

`encode` gives int32 `[N, max_len]`: the tokenizer's own leading special
tokens (`[CLS]`), the word pieces, its trailing ones (`[SEP]` for BERT), then
`[PAD]` (id 0). A trained tokenizer gives `[CLS]` + pieces. Any tokenizer.json
with the BERT special tokens and `[PAD]` = 0 loads (e.g. MiniLM's, where
`[UNK]`, `[CLS]`, `[SEP]`, `[MASK]` are 100..103): read the ids from the
`Tokenizer` (`pad_id`, `cls_id`, `mask_id`, ...), never assume them.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
import pathlib

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from mmrec.pretrained import MINILM, minilm_path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def tokenizer_file(path: str | pathlib.Path) -> pathlib.Path:
  """`"minilm"`, a directory holding a tokenizer.json, or the file itself -> the file."""
  path = minilm_path() if str(path) == MINILM else pathlib.Path(path)
  return path / "tokenizer.json" if path.is_dir() else path


class Tokenizer:
  """A `tokenizers.Tokenizer` with the ids the models need and fixed-length encoding."""

  def __init__(self, tokenizer: tokenizers.Tokenizer, source: str = "tokenizer"):
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
      raise ValueError(f"{source}: special tokens {missing} are not in the vocabulary")
    if ids["[PAD]"] != 0:
      raise ValueError(f"{source}: [PAD] must have id 0, it has {ids['[PAD]']}")
    tokenizer.no_padding()  # Padding and truncation are ours (see `encode`).
    tokenizer.no_truncation()
    self.tokenizer = tokenizer
    self._ids = ids
    self.prefix_ids, self.suffix_ids = _special_frame(tokenizer, source)
    if not self.prefix_ids and not self.suffix_ids:  # No post-processor: [CLS] first, as ours.
      self.prefix_ids = [self.cls_id]

  pad_id = property(lambda self: self._ids["[PAD]"])
  unk_id = property(lambda self: self._ids["[UNK]"])
  cls_id = property(lambda self: self._ids["[CLS]"])
  sep_id = property(lambda self: self._ids["[SEP]"])
  mask_id = property(lambda self: self._ids["[MASK]"])

  @classmethod
  def train(cls, texts: Sequence[str], vocab_size: int = 4000) -> Tokenizer:
    """Trains WordPiece on `texts` (deterministic; tiny data gives a smaller vocabulary)."""
    if vocab_size <= len(SPECIAL_TOKENS):
      raise ValueError(
          f"vocab_size={vocab_size} must exceed the {len(SPECIAL_TOKENS)} special tokens")
    tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(),
        normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                   strip_accents=False, lowercase=True),
    ])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    texts = [str(t) for t in texts]
    # The trainer numbers the "##c" pieces in hash-map order and breaks ties in
    # merge counts by those numbers, so training is not deterministic
    # (huggingface/tokenizers#1794). Listing every "##c" up front fixes their ids.
    chars = sorted(set().union(*map(set, map(tok.normalizer.normalize_str, texts))))
    pieces = ["##" + c for c in chars if not c.isspace()]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, *pieces],
        continuing_subword_prefix="##", show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    # The pieces stay in the vocabulary but must not be special (added) tokens.
    config = json.loads(tok.to_str())
    config["added_tokens"] = [t for t in config["added_tokens"] if t["content"] in SPECIAL_TOKENS]
    tok = tokenizers.Tokenizer.from_str(json.dumps(config))
    # So that tokenizer.json used directly also puts [CLS] first.
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", tok.token_to_id("[CLS]"))])
    return cls(tok, source="trained tokenizer")

  @classmethod
  def load(cls, path: str | pathlib.Path) -> Tokenizer:
    """Loads a tokenizer.json, the one in a directory, or MiniLM's (`"minilm"`)."""
    path = tokenizer_file(path)
    try:
      tok = tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:  # The Rust errors carry no path; add it.
      raise ValueError(f"{path}: not a readable tokenizer.json ({e})") from e
    return cls(tok, source=str(path))

  def save(self, path: str | pathlib.Path) -> None:
    self.tokenizer.save(str(path))

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  def encode(self, texts: Sequence[str], max_len: int) -> np.ndarray:
    """Returns int32 `[N, max_len]`: prefix ([CLS]), as many pieces as fit, suffix, [PAD]."""
    frame = len(self.prefix_ids) + len(self.suffix_ids)
    if max_len < frame:
      raise ValueError(f"max_len={max_len} must be at least {frame} (room for "
                       f"{self.tokenizer.decode(self.prefix_ids + self.suffix_ids, False)})")
    encodings = self.tokenizer.encode_batch_fast([str(t) for t in texts], add_special_tokens=False)
    out = np.full((len(encodings), max_len), self.pad_id, np.int32)
    for row, encoding in zip(out, encodings):
      ids = self.prefix_ids + encoding.ids[:max_len - frame] + self.suffix_ids
      row[:len(ids)] = ids
    return out

  def decode(self, ids: np.ndarray | Sequence[int]) -> str | list[str]:
    """Decodes `[L]` ids to a string or `[N, L]` ids to a list, dropping special tokens."""
    ids = np.asarray(ids)
    if ids.ndim == 1:
      return self.tokenizer.decode(ids.tolist(), skip_special_tokens=True)
    return self.tokenizer.decode_batch(ids.tolist(), skip_special_tokens=True)


def _special_frame(tokenizer: tokenizers.Tokenizer, source: str) -> tuple[list[int], list[int]]:
  """The special token ids the tokenizer's post-processor puts before and after a text."""
  encoding = tokenizer.encode("a", add_special_tokens=True)
  text_positions = [i for i, s in enumerate(encoding.sequence_ids) if s is not None]
  if not text_positions:
    raise ValueError(f"{source}: encoding 'a' gives no text token, only {encoding.tokens}")
  return encoding.ids[:text_positions[0]], encoding.ids[text_positions[-1] + 1:]
