"""New items from a JSON Lines feed, embedded with the item tower and added to a bundle."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from mmrec import jobs
from mmrec.retrieval import new_items
from mmrec.serving import load_bundle
from mmrec.training import two_tower as train_lib


def _feed(tmp_path, rows):
  path = tmp_path / "feed.jsonl"
  path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
  return path


def _png(path, colour):
  buffer = io.BytesIO()
  Image.new("RGB", (40, 40), colour).save(buffer, "PNG")
  path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("line, message", [
    ('{"item_id": "a", "title": ', r"feed.jsonl:2: malformed JSON"),
    ('{"item_id": "b"}', r"feed.jsonl:2: field 'title' is required"),
    ('{"item_id": "new-1", "title": "again"}', r"feed.jsonl:2: item_id 'new-1' repeats line 1"),
    ('{"item_id": "c", "title": "t", "image": "nope.png"}', r"feed.jsonl:2: image 'nope.png' not found"),
    ('{"item_id": "c", "title": "t", "price": "9"}', r"feed.jsonl:2: unknown fields \['price'\]"),
    ('{"item_id": 5, "title": "t"}', r"feed.jsonl:2: field 'item_id' must be a string"),
])
def test_bad_feeds_name_file_and_line(tmp_path, line, message):
  path = _feed(tmp_path, [{"item_id": "new-1", "title": "ok"}, line])
  with pytest.raises(ValueError, match=message):
    new_items.read_feed(path)


def test_feed_items_are_embedded_added_and_removed(tmp_path, tiny_config):
  model, data, items = train_lib.prepare(tiny_config, tmp_path)
  trained = train_lib.Trained(model, data, items, step=0)  # an untrained tower embeds too
  bundle_dir = jobs.export(trained, tiny_config, tmp_path / "bundle")
  assert load_bundle(bundle_dir).manifest["recall"]["queries"] == "user_tower:test"
  _png(tmp_path / "red.png", (200, 20, 20))
  feed = _feed(tmp_path, [
      {"item_id": "new-1", "title": "Red linen dress", "category": "dress", "image": "red.png"},
      "",
      {"item_id": "new-2", "title": "Blue canvas tote bag", "description": "roomy"},
  ])
  catalog, images = new_items.read_feed(feed)
  assert catalog.item_id.tolist() == ["new-1", "new-2"] and images == ["red.png", ""]
  emb = new_items.embed(trained, tiny_config, catalog)
  d = tiny_config.model.embed_dim  # then the item's bias, with model.item_bias
  np.testing.assert_allclose(np.linalg.norm(emb[:, :d], axis=1), 1.0, rtol=1e-4)
  assert emb.shape == (2, d + tiny_config.model.item_bias)

  reports = jobs.update_bundle(trained, tiny_config, bundle_dir, add_feed=str(feed))
  assert reports[0]["added"] == 2 and reports[0]["version"] == 2
  bundle = load_bundle(bundle_dir)
  assert bundle.metadata["title"][-2:] == ["Red linen dress", "Blue canvas tote bag"]
  query = emb.copy()
  query[:, d:] = 0.0  # the cosine alone (no item bias): each new item is its own best match
  ids, _ = bundle.search(query, 1)
  assert ids[:, 0].tolist() == ["new-1", "new-2"]
  np.testing.assert_allclose(bundle.embeddings[-2:], emb, rtol=1e-6)

  reports = jobs.update_bundle(None, tiny_config, bundle_dir, remove_ids=["new-1"])
  bundle = load_bundle(bundle_dir)
  assert reports[0]["removed"] == 1 and bundle.version == 3 and "new-1" not in bundle.item_ids
