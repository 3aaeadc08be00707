"""The delimited-text reader: physical line numbers, one bad record costs only itself."""

import gzip

import pytest

from mmrec.data.importers import tables
from mmrec.data.importers.drops import ROW_REASONS, DataImportError, Drops


def _read(path, **kw):
  drops = Drops(ROW_REASONS)
  rows = []
  for batch, numbers in tables.read_delimited(path, ["id", "text"], drops, **kw):
    rows += list(zip(numbers.tolist(), batch["id"].to_pylist(), batch["text"].to_pylist()))
  return rows, drops


def test_line_numbers_with_bom_crlf_blank_lines_and_quoted_breaks(tmp_path):
  data = (b"\xef\xbb\xbfid,text\r\n"  # line 1: the header, after a byte order mark
          b"a,plain\r\n"  # 2
          b"\n"  # 3: blank
          b'b,"two\r\nlines, ""quoted"""\n'  # 4-5: one record
          b"c,x,extra\n"  # 6: malformed
          b"d,caf\xc3\xa9\n"  # 7
          b"e,bad \xff byte\n"  # 8: not UTF-8
          b"f,last")  # 9: no line end
  (tmp_path / "t.csv").write_bytes(data)
  rows, drops = _read(tmp_path / "t.csv", multiline=True)
  assert rows == [(2, "a", "plain"), (4, "b", 'two\nlines, "quoted"'), (7, "d", "café"),
                  (9, "f", "last")]
  assert drops.examples == {"malformed_line": ["t.csv line 6"], "bad_encoding": ["t.csv line 8"]}
  assert tables.header(tmp_path / "t.csv") == ["id", "text"]


@pytest.mark.parametrize("multiline", [False, True])
def test_an_open_quote_costs_its_line_only(tmp_path, multiline):
  lines = ["id,text", 'x,"never closed'] + [f"r{i},row {i}" for i in range(150)]
  lines.insert(80, 'q,"a quote, later"')  # closes nothing: the text after it is not a field end
  (tmp_path / "t.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
  rows, drops = _read(tmp_path / "t.csv.gz", multiline=multiline)
  expected = [(n, *line.split(",", 1)) for n, line in enumerate(lines, 1) if line[0] == "r"]
  expected.insert(78, (81, "q", "a quote, later"))
  assert rows == expected and drops.counts["malformed_line"] == 1
  assert drops.examples == {"malformed_line": ["t.csv.gz line 2"]}
  assert drops.files() == {"t.csv.gz": {"read": 1, "kept": 0, "dropped": {"malformed_line": 1}}}


def test_a_bad_header_is_named(tmp_path):
  (tmp_path / "t.csv").write_bytes(b"\n\xffid,text\na,b\n")
  with pytest.raises(DataImportError, match=r"t\.csv line 2 \(the header\): not utf8 text"):
    tables.header(tmp_path / "t.csv")


def test_a_bad_byte_inside_a_quoted_value_stops_it(tmp_path):
  (tmp_path / "t.csv").write_bytes(b'id,text\na,"starts\nbad \xff byte\nends"\nb,ok\n')
  rows, drops = _read(tmp_path / "t.csv", multiline=True)
  assert rows == [(5, "b", "ok")]  # no value is glued together around the bad line
  assert drops.examples == {"malformed_line": ["t.csv line 2", "t.csv line 4"],
                            "bad_encoding": ["t.csv line 3"]}
