"""H&M-style fashion data (the Kaggle "H&M Personalized Fashion Recommendations" layout).

Files: `articles.csv` (article_id required; prod_name, product_type_name,
product_group_name, colour_group_name, graphical_appearance_name,
section_name, garment_group_name, index_group_name, detail_desc used when
present), `transactions_train.csv` (t_dat as YYYY-MM-DD, customer_id,
article_id; purchases, no ratings), optional `customers.csv` (customer_id:
transactions of other customers are dropped as unknown_user). Article ids are
zero-padded to 10 digits (spreadsheets drop the leading 0). Images:
`images/<first 3 digits>/<article_id>.jpg`; a missing file = no image.
Item text: title = prod_name; description = type, colour, pattern, then
detail_desc; category = product group > product type. The categorical
columns also become catalog attributes (for plots and probes).
Validation (the Kaggle data description): article ids are digits (up to 10
once padded), customer ids 64 lowercase hex digits (a SHA-256), t_dat a real
date written YYYY-MM-DD.
"""

from __future__ import annotations

import pathlib

import pyarrow as pa
import pyarrow.compute as pc

from mmrec.data.importers import tables
from mmrec.data.importers.base import Imported, Options, Rules, finish, require_dir, require_file

ATTRIBUTES = {"product_type": "product_type_name", "product_group": "product_group_name",
              "colour": "colour_group_name", "pattern": "graphical_appearance_name",
              "section": "section_name", "garment_group": "garment_group_name",
              "index_group": "index_group_name"}
TEXT = ("prod_name", "detail_desc")
HM = Rules(user_id=r"[0-9a-f]{64}", item_id=r"[0-9]{10}")
DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"


def read_hm(path, options: Options) -> Imported:
  path = require_dir(path)
  articles = require_file(path, "articles.csv", what="H&M articles")
  transactions = require_file(path, "transactions_train.csv", what="H&M transactions")
  present = tables.header(articles)
  tables.require_columns(articles, present, {"item id": "article_id"})
  wanted = ["article_id"] + [c for c in (*TEXT, *ATTRIBUTES.values()) if c in present]
  image_root = path / "images"
  builder = options.catalog_builder(articles.name, HM)
  for batch, rows in tables.read_delimited(articles, wanted, builder.drops, multiline=True):
    ids = article_ids(batch["article_id"]).to_pylist()
    values = {c: tables.to_text(batch[c]).to_pylist() for c in wanted[1:]}
    get = lambda c, i: (values[c][i] or "") if c in values else ""
    for i, (item_id, row) in enumerate(zip(ids, rows.tolist())):
      described = ", ".join(v for v in (get(ATTRIBUTES["product_type"], i),
                                        get(ATTRIBUTES["colour"], i),
                                        get(ATTRIBUTES["pattern"], i)) if v)
      category = " > ".join(v for v in (get(ATTRIBUTES["product_group"], i),
                                        get(ATTRIBUTES["product_type"], i)) if v)
      builder.add(item_id, get("prod_name", i),
                  ". ".join(v for v in (described, get("detail_desc", i)) if v), category,
                  image=str(image_path(image_root, item_id)) if item_id else None,
                  attributes={a: get(c, i) for a, c in ATTRIBUTES.items() if c in values},
                  where=f"articles.csv line {row}")

  files = [articles, transactions]
  known_users = None
  customers = path / "customers.csv"
  if customers.exists():
    files.append(customers)
    tables.require_columns(customers, tables.header(customers), {"user id": "customer_id"})
    known_users = options.user_list(HM)
    for batch, rows in tables.read_delimited(customers, ["customer_id"], known_users.drops):
      known_users.add(customers.name, rows, batch["customer_id"])
  present = tables.header(transactions)
  tables.require_columns(transactions, present, {"date": "t_dat", "user id": "customer_id",
                                                 "item id": "article_id"})
  collector = options.collector(builder.index, known_users, HM)
  for batch, rows in tables.read_delimited(transactions, ["t_dat", "customer_id", "article_id"],
                                           collector.drops):
    collector.add(transactions.name, rows, batch["customer_id"],
                  article_ids(batch["article_id"]),
                  tables.to_seconds(batch["t_dat"], "%Y-%m-%d", pattern=DATE), None)
  encoder = options.encoder() if image_root.is_dir() else None
  return finish("hm", path, files, builder, collector, encoder, has_rating=False)


def article_ids(column: pa.Array) -> pa.Array:
  """Trimmed ids; all-digit ids shorter than 10 are left-padded with zeros."""
  text = tables.to_text(column)
  digits = pc.fill_null(pc.utf8_is_digit(text), False)
  return pc.if_else(digits, pc.utf8_lpad(text, 10, "0"), text)


def image_path(root: pathlib.Path, article_id: str) -> pathlib.Path:
  return root / article_id[:3] / f"{article_id}.jpg"
