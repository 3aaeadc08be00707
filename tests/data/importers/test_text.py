"""Text normalisation: unicode, HTML entities and tags, whitespace; truncation."""

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
