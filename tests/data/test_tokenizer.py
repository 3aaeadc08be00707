"""WordPiece tokenizer: training, save/load, encode/decode, loading a pretrained one."""

import json
import subprocess
import sys
import unicodedata

import numpy as np
import pytest
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers

from mmrec.data.tokenizer import SPECIAL_TOKENS, Tokenizer
from mmrec.pretrained import minilm_path

_WORDS = ["Red", "blue", "cotton", "SHIRT", "dress", "linen", "soft", "Café", "striped",
          "jacket", "wool", "ÉTÉ", "２０２４", "jackets", "shirts", "reddish", "naïve"]


def _texts(n=400, seed=0) -> list[str]:
  rng = np.random.default_rng(seed)
  return [" ".join(rng.choice(_WORDS, 6)) + ". " + " ".join(rng.choice(_WORDS, 4))
          for _ in range(n)]


def _normalized(text: str) -> str:
  return unicodedata.normalize("NFKC", text).lower()


def test_special_tokens_and_sizes():
  tok = Tokenizer.train(_texts(), vocab_size=120)
  assert [tok.tokenizer.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS)
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
  assert len(SPECIAL_TOKENS) < tok.vocab_size <= 120
  # Tiny data: the vocabulary stops short of a large vocab_size.
  assert Tokenizer.train(["a b c"], vocab_size=4000).vocab_size < 20


def test_roundtrip_save_load(tmp_path):
  texts = _texts()
  tok = Tokenizer.train(texts, vocab_size=300)
  tok.save(tmp_path / "tokenizer.json")
  loaded = Tokenizer.load(tmp_path / "tokenizer.json")
  assert loaded.vocab_size == tok.vocab_size
  ids = loaded.encode(texts, max_len=64)
  np.testing.assert_array_equal(ids, tok.encode(texts, max_len=64))
  assert ids.dtype == np.int32 and ids.shape == (len(texts), 64)
  assert (ids[:, 0] == loaded.cls_id).all()
  assert not np.isin(ids, [loaded.unk_id]).any()
  assert loaded.decode(ids) == [_normalized(t) for t in texts]
  assert loaded.decode(ids[0]) == _normalized(texts[0])


def test_padding_and_truncation():
  tok = Tokenizer.train(_texts(), vocab_size=300)
  ids = tok.encode(["soft wool", "", "soft wool " * 20], max_len=8)
  pieces = tok.tokenizer.encode("soft wool", add_special_tokens=False).ids
  assert ids[0].tolist() == [tok.cls_id, *pieces] + [0] * (7 - len(pieces))
  assert ids[1].tolist() == [tok.cls_id] + [0] * 7
  assert (ids[2] != tok.pad_id).all()  # Truncated to exactly max_len.
  assert ("soft wool " * 20).startswith(tok.decode(ids[2]) + " ")
  assert tok.encode(["wool"], max_len=1).tolist() == [[tok.cls_id]]
  with pytest.raises(ValueError, match="max_len"):
    tok.encode(["wool"], max_len=0)
  assert tok.encode([], max_len=4).shape == (0, 4)


def test_deterministic_across_processes():
  code = ("import sys; sys.path.insert(0, %r); import test_tokenizer as t; "
          "from mmrec.data.tokenizer import Tokenizer; "
          "print(Tokenizer.train(t._texts(), 150).tokenizer.to_str())" % __file__.rsplit("/", 1)[0])
  outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout for _ in range(3)}
  assert len(outs) == 1
  assert Tokenizer.train(_texts(), 150).tokenizer.to_str() + "\n" in outs


def test_loads_a_bert_style_tokenizer(tmp_path):
  vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, "soft", "wool", "##s", "hat"])}
  bert = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
  bert.normalizer = normalizers.BertNormalizer(lowercase=True)
  bert.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  bert.add_special_tokens(list(SPECIAL_TOKENS))
  bert.enable_padding(length=3)  # Padding stored in the file is ignored by encode.
  bert.save(str(tmp_path / "bert.json"))
  tok = Tokenizer.load(tmp_path / "bert.json")
  assert tok.encode(["Soft hats velvet"], max_len=6).tolist() == [[2, 5, 8, 7, 1, 0]]


def test_bad_files(tmp_path):
  (tmp_path / "broken.json").write_text("{not json")
  with pytest.raises(ValueError, match="broken.json"):
    Tokenizer.load(tmp_path / "broken.json")
  config = json.loads(Tokenizer.train(_texts(), 100).tokenizer.to_str())
  config["model"]["vocab"]["[PAD]"], config["model"]["vocab"]["[MASK]"] = 4, 0
  config["added_tokens"] = []
  (tmp_path / "pad.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match=r"pad.json: \[PAD\] must have id 0"):
    Tokenizer.load(tmp_path / "pad.json")


def test_minilm_tokenizer_roundtrip():
  """A tokenizer.json from elsewhere: MiniLM's ids differ from ours and it ends with [SEP]."""
  tok = Tokenizer.load("minilm")
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
  assert tok.vocab_size == 30522
  assert (tok.prefix_ids, tok.suffix_ids) == ([101], [102])
  texts = ["A red cotton shirt with long sleeves.", "Striped linen dress, soft!", ""]
  reference = tokenizers.Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
  ids = tok.encode(texts, max_len=16)
  for row, text in zip(ids, texts):
    expected = reference.encode(text).ids  # its own template: [CLS] ... [SEP], padded to 128
    expected = expected[:expected.index(102) + 1]
    assert row.tolist() == expected + [0] * (16 - len(expected))
  assert tok.decode(ids) == [t.lower() for t in texts]
  short = tok.encode(["a red cotton shirt with long sleeves"], max_len=5)[0].tolist()
  assert short[0] == 101 and short[-1] == 102 and tok.decode(short) == "a red cotton"
  with pytest.raises(ValueError, match="at least 2"):
    tok.encode(["wool"], max_len=1)
  assert Tokenizer.load(minilm_path()).tokenizer.to_str() == tok.tokenizer.to_str()  # a directory
