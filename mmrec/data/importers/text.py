"""Text normalisation for imported item fields.

`normalize` applies, in order: script/style blocks and HTML tags removed
(twice around entity decoding, so escaped markup such as `&lt;br/&gt;` goes
too), HTML entities decoded, unicode NFKC, control characters turned into
spaces, whitespace runs collapsed to one space, ends trimmed.
A block whose closing tag is missing loses only its opening tag (its text stays).
Every step is linear in the length of the text, whatever it holds.
"""

from __future__ import annotations

import html
import re
import unicodedata

# An opening tag stops at the next "<" (`[^<>]*`), so a run of unclosed tags costs one pass.
_OPEN = re.compile(r"<(script|style)\b[^<>]*>", re.IGNORECASE)
_CLOSE = {kind: re.compile(rf"</{kind}\s*>", re.IGNORECASE) for kind in ("script", "style")}
_TAG = re.compile(r"</?[A-Za-z!][^<>]*>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")
_SPACE = re.compile(r"\s+")


def normalize(text) -> str:
  """Plain, single-spaced NFKC text; None and non-strings give their str (None -> "")."""
  if text is None:
    return ""
  text = str(text)
  if "<" in text or "&" in text:
    text = _TAG.sub(" ", _strip_blocks(text))
    text = html.unescape(text)
    text = _TAG.sub(" ", _strip_blocks(text))
  text = unicodedata.normalize("NFKC", text)
  text = _CONTROL.sub(" ", text)
  return _SPACE.sub(" ", text).strip()


def _strip_blocks(text: str) -> str:
  """`text` without its <script>...</script> and <style>...</style> blocks, in one pass.

  A regex such as `<script>.*?</script>` rescans the rest of the text from every
  unclosed opening tag (quadratic); here the search for a kind's closing tag runs
  at most once past its last occurrence: once it fails, no later tag of that kind
  can close either.
  """
  parts, pos, unclosed = [], 0, set()
  while (start := _OPEN.search(text, pos)) is not None:
    kind = start.group(1).lower()
    end = None if kind in unclosed else _CLOSE[kind].search(text, start.end())
    if end is None:  # No closing tag: all is kept here (_TAG then removes the opening tag).
      unclosed.add(kind)
      parts.append(text[pos:start.end()])
      pos = start.end()
    else:
      parts += [text[pos:start.start()], " "]
      pos = end.end()
  parts.append(text[pos:])
  return "".join(parts)


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
