"""The per-layout writers of the fault corpus (see fault_corpus.py): valid rows, tricky
ones and planted faults for each importer layout, and the faults that must refuse."""

from __future__ import annotations

import datetime
import importlib.util
import json
import pathlib
import random
import sys


def _model():
  """fault_model.py beside this file, however this file was loaded."""
  key = "_mmrec_fault_corpus_fault_model"
  if key not in sys.modules:
    path = pathlib.Path(__file__).with_name("fault_model.py")
    spec = importlib.util.spec_from_file_location(key, path)
    sys.modules[key] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[key])
  return sys.modules[key]


m = _model()
Corpus, Fault, Planter, TextFile = m.Corpus, m.Fault, m.Planter, m.TextFile
BAD_BYTE, HUGE_CHARS, TITLES, csv_field = m.BAD_BYTE, m.HUGE_CHARS, m.TITLES, m.csv_field
LAYOUTS, FORMAT = m.LAYOUTS, m.FORMAT


def _movielens(corpus: Corpus, planter: Planter, rng: random.Random, ml1m: bool):
  root, enc = corpus.root, "latin-1"
  n_items, n_users = rng.randint(8, 12), rng.randint(5, 8)
  item_ids, users = [str(i) for i in range(1, n_items + 1)], [str(u) for u in range(1, n_users + 1)]
  latin = [t for t in TITLES if all(ord(c) < 256 for c in t)]
  huge = rng.choice(item_ids[2:])
  valid = []
  for item_id in item_ids:
    title = "x" * HUGE_CHARS if item_id == huge else rng.choice(latin)
    expected = title if ml1m else f"{title} (1995)"
    record = (f"{item_id}::{title}::Drama|Comedy" if ml1m
              else f"{item_id}|{title}|01-Jan-1995||http://x|{m.flags(rng)}")
    valid.append((record, (item_id, expected, item_id == huge)))
  if ml1m:
    item_faults = [("wrong field count", "malformed_line", lambda: "777::Broken"),
                   ("missing id", "missing_id", lambda: "::No id::Drama"),
                   ("bad id form", "bad_id", lambda: "12a::Bad id::Drama"),
                   ("duplicate id", "duplicate_item", lambda: "1::Again::Drama")]
  else:
    item_faults = [("wrong field count", "malformed_line", lambda: "777|Broken|01-Jan-1995"),
                   ("bad genre flag", "malformed_line",
                    lambda: "778|Flag|01-Jan-1995||x|2" + "|0" * 18),
                   ("missing id", "missing_id", lambda: f"|No id|||x|{m.flags(rng)}"),
                   ("bad id form", "bad_id", lambda: f"12a|Bad id|||x|{m.flags(rng)}"),
                   ("oversized id", "oversized_id", lambda: f"{'9' * 150}|Long|||x|{m.flags(rng)}"),
                   ("duplicate id", "duplicate_item", lambda: f"1|Again|||x|{m.flags(rng)}")]
  name = "movies.dat" if ml1m else "u.item"
  planter.write("items", TextFile(root / name, rng, enc), valid, m.pick_faults(rng, item_faults),
                lambda p, w: m.titled(corpus, p, w))
  corpus.images = {"no_image": len(corpus.items)}
  sep = "::" if ml1m else "\t"
  if ml1m:
    user_faults = [("wrong field count", "malformed_line", lambda: "50::F::1"),
                   ("missing id", "missing_id", lambda: "::M::25::4::12345"),
                   ("bad id form", "bad_id", lambda: "x7::M::25::4::12345")]
    planter.write("users", TextFile(root / "users.dat", rng, enc),
                  [(f"{u}::F::25::4::0{u}123", None) for u in users],
                  m.pick_faults(rng, user_faults))
  rows = []
  for _ in range(rng.randint(25, 40)):
    row = (rng.choice(users), rng.choice(corpus.items), rng.randint(874724710, 1046454590),
           float(rng.randint(1, 5)))
    rows.append((sep.join([row[0], row[1], str(int(row[3])), str(row[2])]), row))
  line = lambda u="1", i="1", r="3", t="881250949": sep.join([u, i, r, t])
  faults = [("wrong field count", "malformed_line", lambda: sep.join(["1", "1", "3"])),
            ("missing id", "missing_id", lambda: line(u="")),
            ("oversized id", "oversized_id", lambda: line(u="1" * 150)),
            ("bad id form", "bad_id", lambda: line(u=rng.choice(["u7", "-3", "0", "1.0"]))),
            ("stray quote", "bad_id", lambda: line(i='"1')),
            ("rating out of range", "bad_rating", lambda: line(r=rng.choice(["0", "6", "-1"]))),
            ("half-star rating", "bad_rating", lambda: line(r="3.5")),
            ("bad timestamp", "bad_timestamp",
             lambda: line(t=rng.choice(["yesterday", "-5", "881250949.5", "9999999999"]))),
            ("unknown item", "unknown_item", lambda: line(i="9999"))]
  if ml1m:
    faults += [("unknown user", "unknown_user", lambda: line(u="5000")),
               ("wrong separator", "malformed_line", lambda: "1:x:10::4::881250960")]
  planter.write("interactions", TextFile(root / ("ratings.dat" if ml1m else "u.data"), rng, enc),
                rows, m.pick_faults(rng, faults), lambda r, w: m.row(corpus, r, w))


def _recbole(corpus: Corpus, planter: Planter, rng: random.Random):
  root, stem = corpus.root, corpus.root.name
  item_ids = m.ids(rng, rng.randint(8, 12), lambda r: f"i{r.randint(1, 999)}")
  users = m.ids(rng, rng.randint(5, 8), lambda r: f"u{r.randint(1, 999)}") + ["jürgen"]
  huge = rng.choice(item_ids[2:])
  valid = []
  for item_id in item_ids:
    title = m.huge(rng) if item_id == huge else rng.choice(TITLES)
    valid.append((f"{item_id}\t{title}\tDrama Comedy", (item_id, title, item_id == huge)))
  header = "item_id:token\tmovie_title:token_seq\tclass:token_seq"
  item_faults = [("wrong field count", "malformed_line", lambda: "i5000\tBroken"),
                 ("invalid UTF-8", "bad_encoding", lambda: b"i5001\tBad " + BAD_BYTE + b"\tDrama"),
                 ("missing id", "missing_id", lambda: "\tNo id\tDrama"),
                 ("duplicate id", "duplicate_item", lambda: f"{item_ids[0]}\tAgain\tDrama")]
  file = TextFile(root / f"{stem}.item", rng)
  file.add(header, count=False)
  planter.write("items", file, valid, m.pick_faults(rng, item_faults),
                lambda p, w: m.titled(corpus, p, w))
  corpus.images = {"no_image": len(corpus.items)}
  file = TextFile(root / f"{stem}.user", rng)
  file.add("user_id:token\tage:token", count=False)
  user_faults = [("wrong field count", "malformed_line", lambda: "u5000"),
                 ("invalid UTF-8", "bad_encoding", lambda: b"u5001" + BAD_BYTE + b"\t20")]
  planter.write("users", file, [(f"{u}\t{rng.randint(18, 70)}", None) for u in users],
                m.pick_faults(rng, user_faults))
  rows = []
  for _ in range(rng.randint(25, 40)):
    row = (rng.choice(users), rng.choice(corpus.items), rng.randint(874724710, 893286638),
           float(rng.choice(["1", "2.5", "4", "5"])))
    rows.append((f"{row[0]}\t{row[1]}\t{row[3]}\t{row[2]}", row))
  line = lambda u=users[0], i=item_ids[0], r="3", t="881250949": "\t".join([u, i, r, t])
  faults = [("wrong field count", "malformed_line", lambda: f"{users[0]}\t{item_ids[0]}"),
            ("invalid UTF-8", "bad_encoding", lambda: line(u="u1").encode() + BAD_BYTE),
            ("missing id", "missing_id", lambda: line(i="")),
            ("oversized id", "oversized_id", lambda: line(u="u" * 150)),
            ("bad timestamp", "bad_timestamp", lambda: line(t=rng.choice(["abc", "-1", "1e99"]))),
            ("bad rating", "bad_rating", lambda: line(r=rng.choice(["x", "nan", "inf"]))),
            ("unknown item", "unknown_item", lambda: line(i="i99999")),
            ("unknown user", "unknown_user", lambda: line(u="u99999"))]
  file = TextFile(root / f"{stem}.inter", rng)
  file.add("user_id:token\titem_id:token\trating:float\ttimestamp:float", count=False)
  planter.write("interactions", file, rows, m.pick_faults(rng, faults),
                lambda r, w: m.row(corpus, r, w))


def _upper(rng, n) -> str:
  return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(n))


def _amazon(corpus: Corpus, planter: Planter, rng: random.Random):
  root = corpus.root
  item_ids = m.ids(rng, rng.randint(8, 12), lambda r: "B0" + _upper(r, 8))
  users = m.ids(rng, rng.randint(5, 8), lambda r: "A" + _upper(r, 27))
  huge = rng.choice(item_ids[2:])
  valid = []
  for item_id in item_ids:
    title = rng.choice(TITLES)
    meta = {"parent_asin": item_id, "title": title, "features": ["Soft", "Warm"],
            "description": [m.huge(rng) if item_id == huge else "Made & packed"],
            "categories": ["Clothing", "Tops"]}
    valid.append((json.dumps(meta, ensure_ascii=rng.random() < 0.5),
                  (item_id, title, item_id == huge)))
  item_faults = [("not JSON", "malformed_line", lambda: '{"parent_asin": "B0BROKEN01", '),
                 ("JSON array", "malformed_line", lambda: "[1, 2]"),
                 ("invalid UTF-8", "bad_encoding",
                  lambda: b'{"parent_asin": "B0BADBYTE1", "title": "x' + BAD_BYTE + b'"}'),
                 ("missing id", "missing_id", lambda: '{"title": "No id"}'),
                 ("bad id form", "bad_id", lambda: '{"parent_asin": "b0lower123", "title": "x"}'),
                 ("duplicate id", "duplicate_item",
                  lambda: json.dumps({"parent_asin": item_ids[0], "title": "Again"}))]
  planter.write("items", TextFile(root / "meta.jsonl", rng), valid,
                m.pick_faults(rng, item_faults), lambda p, w: m.titled(corpus, p, w))
  m.images(corpus, rng, corpus.items, lambda i: root / "images" / f"{i}.png")
  rows = []
  for _ in range(rng.randint(25, 40)):
    millis = rng.randint(1_500_000_000_000, 1_690_000_000_000)
    row = (rng.choice(users), rng.choice(corpus.items), millis // 1000,
           float(rng.randint(1, 5)))
    review = {"user_id": row[0], "parent_asin": row[1], "rating": row[3], "timestamp": millis,
              "text": 'Nice, "really"\n<br/>😀'}
    rows.append((json.dumps(review, ensure_ascii=rng.random() < 0.5), row))
  line = lambda **kw: json.dumps({"user_id": users[0], "parent_asin": item_ids[0], "rating": 4,
                                  "timestamp": 1_600_000_000_000} | kw)
  faults = [("not JSON", "malformed_line", lambda: "{oops"),
            ("invalid UTF-8", "bad_encoding",
             lambda: line(text="x").encode().replace(b'"x"', b'"' + BAD_BYTE + b'"')),
            ("missing id", "missing_id", lambda: line(user_id=None)),
            ("oversized id", "oversized_id", lambda: line(user_id="A" * 150)),
            ("bad id form", "bad_id", lambda: line(parent_asin=rng.choice(["b0lower123", "B0"]))),
            ("rating out of range", "bad_rating", lambda: line(rating=rng.choice([0, 6, 5.5]))),
            ("bad rating", "bad_rating", lambda: line(rating="five")),
            ("bad timestamp", "bad_timestamp",
             lambda: line(timestamp=rng.choice(["soon", 1.5e12 + 0.5, -1000]))),
            ("unknown item", "unknown_item", lambda: line(parent_asin="B0NOTTHERE"))]
  planter.write("interactions", TextFile(root / "reviews.jsonl", rng), rows,
                m.pick_faults(rng, faults), lambda r, w: m.row(corpus, r, w))


def _hex(rng) -> str:
  return "".join(rng.choice("0123456789abcdef") for _ in range(64))


def _hm(corpus: Corpus, planter: Planter, rng: random.Random):
  root = corpus.root
  item_ids = m.ids(rng, rng.randint(8, 12), lambda r: f"0{r.randint(100_000_000, 999_999_999)}")
  users = m.ids(rng, rng.randint(5, 8), _hex)
  huge = rng.choice(item_ids[2:])
  valid = []
  for item_id in item_ids:
    title = rng.choice(TITLES)
    desc = rng.choice(["Soft cotton.\nMachine wash at 30°C", 'Jersey top, "narrow"', "Plain",
                       "First line.\n\nAfter a blank line"])
    desc = m.huge(rng) if item_id == huge else desc
    written = item_id.lstrip("0") if rng.random() < 0.5 else item_id  # spreadsheets drop the 0
    fields = [written, item_id[:7], title, "Vest top", "Black", desc]
    valid.append((",".join(csv_field(f) for f in fields), (item_id, title, item_id == huge)))
  item_faults = [
      ("wrong field count", "malformed_line", lambda: "0999000001,999000,Broken"),
      ("unbalanced quote", "malformed_line",
       lambda: '0999000002,999000,"Open quote,Vest top,Black,Never closed'),
      ("invalid UTF-8", "bad_encoding",
       lambda: b"0999000003,999000,Bad " + BAD_BYTE + b",Vest top,Black,x"),
      ("missing id", "missing_id", lambda: ",999000,No id,Vest top,Black,x"),
      ("bad id form", "bad_id", lambda: "ABC1234567,999000,Letters,Vest top,Black,x"),
      ("duplicate id", "duplicate_item", lambda: f"{item_ids[0]},1,Again,Vest top,Black,x")]
  file = TextFile(root / "articles.csv", rng)
  file.add("article_id,product_code,prod_name,product_type_name,colour_group_name,detail_desc",
           count=False)
  planter.write("items", file, valid, m.pick_faults(rng, item_faults),
                lambda p, w: m.titled(corpus, p, w))
  m.images(corpus, rng, corpus.items, lambda i: root / "images" / i[:3] / f"{i}.jpg")
  file = TextFile(root / "customers.csv", rng)
  file.add("customer_id,age", count=False)
  user_faults = [("wrong field count", "malformed_line", lambda: f"{_hex(rng)},30,extra"),
                 ("bad id form", "bad_id", lambda: "not-a-hash,30"),
                 ("invalid UTF-8", "bad_encoding", lambda: _hex(rng).encode() + BAD_BYTE + b",30")]
  planter.write("users", file, [(f"{u},{rng.randint(18, 80)}", None) for u in users],
                m.pick_faults(rng, user_faults))
  rows = []
  for _ in range(rng.randint(25, 40)):
    day = rng.randint(17_794, 18_527)  # 2018-09-20 .. 2020-09-22, in days
    date = (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()
    item_id = rng.choice(corpus.items)
    written = item_id.lstrip("0") if rng.random() < 0.5 else item_id
    row = (rng.choice(users), item_id, day * 86_400, None)
    rows.append((f"{date},{row[0]},{written},0.0508,{rng.choice('12')}", row))
  line = lambda d="2019-05-01", u=users[0], a=item_ids[0]: f"{d},{u},{a},0.0508,2"
  faults = [("wrong field count", "malformed_line", lambda: f"2019-05-01,{users[0]}"),
            ("unbalanced quote", "malformed_line", lambda: line(u='"' + users[0])),
            ("invalid UTF-8", "bad_encoding", lambda: line().encode() + BAD_BYTE),
            ("missing id", "missing_id", lambda: line(u="")),
            ("oversized id", "oversized_id", lambda: line(u="f" * 150)),
            ("bad id form", "bad_id", lambda: line(u=rng.choice(["XYZ", users[0][:63]]))),
            ("bad timestamp", "bad_timestamp",
             lambda: line(d=rng.choice(["2020-02-30", "2020-9-1", "yesterday", "20200901"]))),
            ("unknown item", "unknown_item", lambda: line(a="0999999999")),
            ("unknown user", "unknown_user", lambda: line(u="0" * 64))]
  file = TextFile(root / "transactions_train.csv", rng)
  file.add("t_dat,customer_id,article_id,price,sales_channel_id", count=False)
  planter.write("interactions", file, rows, m.pick_faults(rng, faults),
                lambda r, w: m.row(corpus, r, w))


def _generic(corpus: Corpus, planter: Planter, rng: random.Random):
  root = corpus.root
  item_ids = m.ids(rng, rng.randint(8, 12), lambda r: f"sku-{r.randint(1, 999)}")
  item_ids[rng.randrange(2, len(item_ids))] = "sku,with comma"
  item_ids[rng.randrange(2, len(item_ids))] = "ñandú-7"
  item_ids = list(dict.fromkeys(item_ids))
  users = m.ids(rng, rng.randint(5, 8), lambda r: f"user{r.randint(1, 999)}") + ['o"neil']
  huge = rng.choice(item_ids[2:])
  valid = []
  for item_id in item_ids:
    title = rng.choice(TITLES)
    desc = m.huge(rng) if item_id == huge else rng.choice(["Line one\nline two", "Plain", ""])
    fields = [item_id, title, desc, "tops"]
    valid.append((",".join(csv_field(f) for f in fields), (item_id, title, item_id == huge)))
  item_faults = [("wrong field count", "malformed_line", lambda: "sku-5000,Broken"),
                 ("unbalanced quote", "malformed_line", lambda: 'sku-5001,"Open quote,x,tops'),
                 ("invalid UTF-8", "bad_encoding", lambda: b"sku-5002,Bad " + BAD_BYTE + b",x,y"),
                 ("missing id", "missing_id", lambda: ",No id,x,tops"),
                 ("duplicate id", "duplicate_item",
                  lambda: f"{csv_field(item_ids[0])},Again,x,tops")]
  file = TextFile(root / "items.csv", rng)
  file.add("item_id,title,description,category", count=False)
  planter.write("items", file, valid, m.pick_faults(rng, item_faults),
                lambda p, w: m.titled(corpus, p, w))
  simple = [i for i in corpus.items if "," not in i]
  m.images(corpus, rng, simple, lambda i: root / "images" / f"{i}.png")
  rows = []
  for _ in range(rng.randint(25, 40)):
    row = (rng.choice(users), rng.choice(corpus.items), rng.randint(1_500_000_000, 1_700_000_000),
           float(rng.choice(["1", "3.5", "5"])))
    rows.append((",".join(csv_field(str(f)) for f in row), row))
  line = lambda u=users[0], i=item_ids[0], t="1600000000", r="4": ",".join(
      [csv_field(u), csv_field(i), t, r])
  faults = [("wrong field count", "malformed_line", lambda: f"{users[0]},{item_ids[0]}"),
            ("unbalanced quote", "malformed_line", lambda: f'"{users[0]},sku-1,1600000000,4'),
            ("invalid UTF-8", "bad_encoding", lambda: line().encode() + BAD_BYTE),
            ("missing id", "missing_id", lambda: line(u="")),
            ("oversized id", "oversized_id", lambda: line(u="u" * 150)),
            ("bad timestamp", "bad_timestamp",
             lambda: line(t=rng.choice(["abc", "-1", "99999999999"]))),
            ("bad rating", "bad_rating", lambda: line(r=rng.choice(["x", "nan"]))),
            ("unknown item", "unknown_item", lambda: line(i="sku-99999"))]
  file = TextFile(root / "interactions.csv", rng)
  file.add("user_id,item_id,timestamp,rating", count=False)
  planter.write("interactions", file, rows, m.pick_faults(rng, faults),
                lambda r, w: m.row(corpus, r, w))


WRITERS = {"movielens-100k": lambda c, p, r: _movielens(c, p, r, ml1m=False),
           "movielens-1m": lambda c, p, r: _movielens(c, p, r, ml1m=True),
           "recbole": _recbole, "amazon": _amazon, "hm": _hm, "generic": _generic}


def _remove(path: pathlib.Path):
  """Damage: the file is gone (undo puts it back)."""
  data = path.read_bytes()
  path.unlink()
  return lambda: path.write_bytes(data)


def _rename_column(path: pathlib.Path, old: str, new: str):
  """Damage: a required column renamed in the header (undo restores it)."""
  data = path.read_bytes()
  path.write_bytes(data.replace(old.encode(), new.encode(), 1))
  return lambda: path.write_bytes(data)


# Faults that must stop the import with a message naming the file (and column).
REFUSALS = {
    "movielens-100k": [("missing required file", lambda r: _remove(r / "u.item"))],
    "movielens-1m": [("missing required file", lambda r: _remove(r / "movies.dat"))],
    "recbole": [("missing required file", lambda r: _remove(r / f"{r.name}.item")),
                ("missing required column",
                 lambda r: _rename_column(r / f"{r.name}.inter", "item_id:", "item:"))],
    "amazon": [("missing required file", lambda r: _remove(r / "meta.jsonl"))],
    "hm": [("missing required file", lambda r: _remove(r / "articles.csv")),
           ("missing required column",
            lambda r: _rename_column(r / "transactions_train.csv", "customer_id", "customer"))],
    "generic": [("missing required file", lambda r: _remove(r / "items.csv")),
                ("missing required column",
                 lambda r: _rename_column(r / "interactions.csv", "user_id", "uid"))],
}
