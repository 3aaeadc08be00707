"""Text normalisation for imported item fields.

`normalize` applies, in order: script/style blocks and HTML tags removed
(twice around entity decoding, so escaped markup such as `&lt;br/&gt;` goes
too), HTML entities decoded, unicode NFKC, control characters turned into
spaces, whitespace runs collapsed to one space, ends trimmed.
"""

from __future__ import annotations

import html
import re
import unicodedata

_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z!][^<>]*>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")
_SPACE = re.compile(r"\s+")


def normalize(text) -> str:
  """Plain, single-spaced NFKC text; None and non-strings give their str (None -> "")."""
  if text is None:
    return ""
  text = str(text)
  if "<" in text or "&" in text:
    text = _TAG.sub(" ", _BLOCK.sub(" ", text))
    text = html.unescape(text)
    text = _TAG.sub(" ", _BLOCK.sub(" ", text))
  text = unicodedata.normalize("NFKC", text)
  text = _CONTROL.sub(" ", text)
  return _SPACE.sub(" ", text).strip()


def truncate(text: str, max_chars: int) -> tuple[str, bool]:
  """(text cut to at most `max_chars`, at a space when one is near the end; whether it was cut)."""
  if len(text) <= max_chars:
    return text, False
  cut = text[:max_chars]
  space = cut.rfind(" ")
  if space >= max_chars * 0.8:
    cut = cut[:space]
  return cut.rstrip(), True


def join(parts, sep: str = ". ") -> str:
  """Normalised non-empty parts joined by `sep` (lists and tuples are flattened)."""
  out = []
  for part in parts:
    if isinstance(part, (list, tuple)):
      part = join(part, " ")
    part = normalize(part)
    if part:
      out.append(part)
  return sep.join(out)
