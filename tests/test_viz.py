"""mmrec.viz against direct numpy references and hand-worked examples."""

from __future__ import annotations

import base64
import io
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from mmrec import viz  # noqa: E402
from mmrec.evaluation.metrics import popularity_groups  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
  yield
  plt.close("all")


def test_pca_2d_matches_the_covariance_eigenvectors():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 7.0
  points, ratio = viz.pca_2d(x)
  centred = x - x.mean(0)
  eigvals, eigvecs = np.linalg.eigh(np.cov(centred, rowvar=False))
  top = eigvecs[:, ::-1][:, :2]
  reference = centred @ top
  for j in range(2):  # each axis is defined up to its sign
    sign = np.sign(points[:, j] @ reference[:, j])
    np.testing.assert_allclose(points[:, j], sign * reference[:, j], atol=1e-8)
  np.testing.assert_allclose(ratio, eigvals[::-1][:2] / eigvals.sum(), rtol=1e-8)
  with pytest.raises(ValueError, match="pca_2d"):
    viz.pca_2d(np.zeros((1, 3)))


def test_long_tail_summary_and_curve():
  counts = np.array([50, 0, 7, 20, 1, 0, 3, 9, 2, 0])
  is_cold = np.array([0, 1, 0, 0, 0, 0, 0, 0, 0, 1], bool)  # item 5: warm, never bought
  groups = popularity_groups(counts, is_cold)
  s = viz.long_tail_summary(counts, groups)
  # 8 warm items -> head = round(0.2 * 8) = 2 items: counts 50 and 20.
  assert (s["head_items"], s["tail_items"], s["cold_items"]) == (2, 6, 2)
  assert s["head_interaction_share"] == pytest.approx(70 / 92)
  assert s["tail_interaction_share"] == pytest.approx(22 / 92)
  assert s["items_without_interactions"] == 3
  ax = viz.long_tail_curve(counts, groups)
  line = ax.get_lines()[0]
  np.testing.assert_array_equal(line.get_ydata(), [50, 20, 9, 7, 3, 2, 1])
  np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 8))
  assert ax.get_yscale() == "log"
  assert ax.get_lines()[1].get_xdata()[0] == pytest.approx(2.5)  # the head cut


def test_group_shares_and_label():
  groups = np.array([0, 1, 1, 2, 0])
  shares = viz.group_shares(np.array([0, 1, 2, 3, -1]), groups)
  assert shares == pytest.approx({"head": 0.25, "tail": 0.5, "cold": 0.25})
  assert viz.shares_label(shares) == "head 25% · tail 50% · cold 25%"


def test_nearest_rows_is_brute_force_cosine():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(30, 5))
  got = viz.nearest_rows(x, 4, 6)
  sims = [(-(x[i] @ x[4]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[4])), i)
          for i in range(30) if i != 4]
  assert got.tolist() == [i for _, i in sorted(sims)[:6]]


def test_recall_by_label_counts_each_held_out_item():
  labels = np.array(["a", "a", "b", "b", "c"])
  topk = np.array([[0, 2], [4, 3]])
  targets = [np.array([0, 1, 2]), np.array([3, 1])]
  # a: items 0 (hit), 1 (miss), 1 (miss) -> 1/3; b: 2 (hit), 3 (hit) -> 1; c: none.
  assert viz.recall_by_label(topk, targets, labels) == pytest.approx({"a": 1 / 3, "b": 1.0})


def test_image_grid_html_round_trips_images_and_escapes_titles():
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
  out = viz.image_grid_html(images, ["<b>x</b>", "y & z", "w"], notes=["tail", "", "cold"],
                            item_ids=["i1", "i2", "i3"], size=40, columns=2, heading="H")
  assert out.count("<img") == 3 and "&lt;b&gt;x&lt;/b&gt;" in out and "y &amp; z" in out
  assert re.findall(r'data-item="([^"]+)"', out) == ["i1", "i2", "i3"]
  assert "repeat(2,40px)" in out
  uris = re.findall(r'src="data:image/png;base64,([^"]+)"', out)
  for uri, image in zip(uris, images):
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))).convert("RGB"))
    np.testing.assert_array_equal(decoded, image)


def test_image_grid_draws_every_image():
  images = np.zeros((7, 8, 8, 3), np.uint8)
  fig = viz.image_grid(images, [f"t{i}" for i in range(7)], ncols=3)
  shown = [ax for ax in fig.axes if ax.images]
  assert len(fig.axes) == 9 and len(shown) == 7
  assert shown[6].get_title() == "t6"
  with pytest.raises(ValueError):
    viz.image_grid(images[:0])


def test_plot_history_and_training_monitor_outside_ipython():
  monitor = viz.TrainingMonitor(30, keys=("loss",))
  monitor(10, {"loss": 2.0, "lr": 0.1})
  monitor.resume(10)
  assert monitor.bar.n == 10
  monitor(20, {"loss": 1.5, "lr": 0.2})
  monitor.close()
  assert monitor.history["loss"] == [(10, 2.0), (20, 1.5)]
  assert monitor.bar.n == 20 and monitor.marks == [10]
  fig = viz.plot_history(monitor.history, ["loss", "missing", "lr"], marks=monitor.marks)
  assert [ax.get_title() for ax in fig.axes] == ["loss", "lr"]
  np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(), [2.0, 1.5])
  with pytest.raises(ValueError, match="no logged values"):
    viz.plot_history({}, ["loss"])


def test_recall_tail_curve_and_grouped_bars_plot_the_values():
  curves = {"m": [{"beta": 0.0, "aplt@20": 0.1, "recall@20": 0.3},
                  {"beta": 0.1, "aplt@20": 0.5, "recall@20": 0.2}]}
  ax = viz.recall_tail_curve(curves)
  np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [0.1, 0.5])
  np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), [0.3, 0.2])
  ax = viz.grouped_bars({"a": {"x": 1.0, "y": 2.0}, "b": {"y": 3.0}})
  assert [p.get_height() for p in ax.patches] == [1.0, 2.0, 0.0, 3.0]


def test_metrics_table_marks_the_best_per_column():
  rows = {"pop": {"recall@20": 0.1, "gini@20": 0.9},
          "mm": {"recall@20": 0.3, "gini@20": 0.5, "aplt@20": float("nan")}}
  table = viz.MetricsTable(rows, ["recall@20", "gini@20", "aplt@20"])
  assert table.best("recall@20") == "mm" and table.best("gini@20") == "mm"
  assert table.best("aplt@20") is None
  html = table._repr_html_()
  assert "<td><b>0.3000</b></td>" in html and "<td>0.1000</td>" in html and "–" in html
  lines = repr(table).splitlines()
  assert lines[0].split() == ["model", "recall@20", "gini@20", "aplt@20"]
  assert lines[2].split()[:3] == ["mm", "0.3000", "0.5000"]
  with pytest.raises(ValueError):
    viz.MetricsTable({})


def test_flat_table_flattens_nested_dicts():
  table = viz.FlatTable({"users": 3, "interactions": {"train": 10, "test": 2},
                         "density": 0.123456, "empty": {}})
  assert table.items == [("users", 3), ("interactions.train", 10), ("interactions.test", 2),
                         ("density", 0.123456), ("empty", {})]
  assert "0.1235" in repr(table) and "<th style='text-align:left'>interactions.test</th>" in \
      table._repr_html_()


def test_recall_tail_labels_do_not_overlap():
  from mmrec import viz
  betas = [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3]
  curve = lambda shift: [{"beta": b, "aplt@20": 1 - np.exp(-30 * b), "recall@20": 0.13 - 0.1 * b  # noqa: E731
                          + shift} for b in betas]
  ax = viz.recall_tail_curve({"multimodal": curve(0.0), "id_only": curve(-0.002)})
  ax.figure.canvas.draw()
  renderer = ax.figure.canvas.get_renderer()
  boxes = [t.get_window_extent(renderer) for t in ax.texts]
  assert len(boxes) >= 4  # the far-apart points keep their labels
  for i, a in enumerate(boxes):
    for b in boxes[i + 1:]:
      assert not a.overlaps(b), (a, b)
  plt.close(ax.figure)
