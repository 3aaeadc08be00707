"""Text normalisation: unicode, HTML entities and tags, whitespace; truncation."""

import html
import random
import re
import unicodedata

import pytest

from mmrec.data.importers.text import join, normalize, truncate


@pytest.mark.parametrize("raw, expected", [
    ("  Soft\n\t wool   hat ", "Soft wool hat"),
    ("<p>Soft &amp; <b>warm</b></p><br/>Wash at 30&deg;C", "Soft & warm Wash at 30°C"),
    ("&lt;br /&gt;Escaped&lt;/p&gt; markup", "Escaped markup"),
    ("<script>var x = '<b>';</script>Shown", "Shown"),
    ("ﬁne ｆｕｌｌ-width Ⅻ", "fine full-width XII"),  # NFKC
    ("a\u00a0b\u200bc\x00d", "a b c d"),
    ("1 < 2 and 3 > 2, R&D", "1 < 2 and 3 > 2, R&D"),  # not tags, not entities
    (None, ""),
    (42, "42"),
])
def test_normalize(raw, expected):
  assert normalize(raw) == expected


def test_truncate_and_join():
  assert truncate("short", 10) == ("short", False)
  assert truncate("one two three four five", 16) == ("one two three", True)  # at a space
  assert truncate("one two three four five", 12) == ("one two thre", True)  # none near the end
  assert truncate("abcdefghijklmnop", 5) == ("abcde", True)
  assert join(["<i>Title</i>", "", ["a", "b"], None, " x "]) == "Title. a b. x"


# The regex the block stripping replaced (quadratic on unclosed blocks): a reference on
# small inputs made of whole tags, where it and the linear scan must agree.
_REFERENCE_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_REFERENCE_TAG = re.compile(r"</?[A-Za-z!][^<>]*>")


def _reference(text: str) -> str:
  text = _REFERENCE_TAG.sub(" ", _REFERENCE_BLOCK.sub(" ", text))
  text = html.unescape(text)
  text = _REFERENCE_TAG.sub(" ", _REFERENCE_BLOCK.sub(" ", text))
  text = unicodedata.normalize("NFKC", text)
  return re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]", " ",
                                    text)).strip()


def test_blocks_match_the_reference_regex():
  tokens = ["<script>", "</script>", "<style type='x'>", "</style >", "<SCRIPT>", "</Script>",
            "word", " ", "<b>", "</p>", "&lt;script&gt;", "&lt;/script&gt;", "<", ">", "é"]
  rng = random.Random(0)
  for _ in range(2000):
    text = "".join(rng.choice(tokens) for _ in range(rng.randint(0, 12)))
    assert normalize(text) == _reference(text), text


MB = 1 << 20


@pytest.mark.parametrize("hostile, expected", [
    ("<script>" * (MB // 8) + "tail", "tail"),  # a million unclosed openings
    ("<script>" + "a " * (MB // 2), " ".join(["a"] * (MB // 2))),  # one, its text kept
    ("&lt;script&gt;" * (MB // 14) + "x", "x"),  # escaped, unclosed after decoding
    ("<script>var a = '<b>';</script>word " * (MB // 36), " ".join(["word"] * (MB // 36))),
    ("<script>" + "x" * MB + "</script>end", "end"),  # one long closed block
    ("<style" * (MB // 6), "<style" * (MB // 6)),  # openings never finished: not tags
    ("<a" * (MB // 2), "<a" * (MB // 2)),
])
def test_hostile_megabyte_field(hostile, expected):
  """One pass over 1 MB fields that made the regex quadratic (108 s at 128 KB; here the
  whole test takes well under a second); the output is checked, not the time."""
  assert normalize(hostile) == expected
