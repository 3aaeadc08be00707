"""Plots and image grids for the notebooks: matplotlib figures and plain HTML, no internet.

Everything takes numpy arrays and plain dicts (item images as uint8 `[N, S, S, 3]`,
counts, metrics dicts as written by `mmrec.evaluation`), so the notebooks stay thin.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

GROUP_NAMES = ("head", "tail", "cold")  # the order of mmrec.evaluation.metrics.popularity_groups


def long_tail_summary(counts, groups) -> dict[str, float]:
  """Items and interaction shares of the head/tail/cold groups (`groups`: 0/1/2 per item)."""
  counts, groups = np.asarray(counts, np.float64), np.asarray(groups)
  total = max(counts.sum(), 1.0)
  out = {"items": float(len(counts)), "items_without_interactions": float((counts == 0).sum())}
  for g, name in enumerate(GROUP_NAMES):
    out[f"{name}_items"] = float((groups == g).sum())
    out[f"{name}_interaction_share"] = float(counts[groups == g].sum() / total)
  return out


def long_tail_curve(counts, groups, ax=None, title: str = "interactions per item"):
  """Items sorted by training interactions (log scale), with the head/tail cut marked."""
  counts = np.asarray(counts)
  ax = ax or plt.subplots(figsize=(7, 3.5))[1]
  order = np.argsort(-counts, kind="stable")
  ranks = np.arange(1, len(counts) + 1)
  positive = counts[order] > 0
  ax.plot(ranks[positive], counts[order][positive], color="tab:blue", lw=1.5)
  ax.set_yscale("log")
  ax.set_xlabel("item rank by training interactions")
  ax.set_ylabel("interactions (log)")
  s = long_tail_summary(counts, groups)
  n_head = int(s["head_items"])
  ax.axvline(n_head + 0.5, color="tab:red", ls="--", lw=1)
  ax.annotate(f"head: {n_head} items, {s['head_interaction_share']:.0%} of interactions\n"
              f"tail: {int(s['tail_items'])} items, {s['tail_interaction_share']:.0%}\n"
              f"cold: {int(s['cold_items'])} items (not shown: no training interaction)",
              xy=(0.98, 0.95), xycoords="axes fraction", ha="right", va="top", fontsize=9)
  ax.set_title(title)
  return ax


def image_grid(images: np.ndarray, titles: Sequence[str] = (), ncols: int = 6,
               cell: float = 1.9, title: str | None = None, wrap: int = 22):
  """A matplotlib figure of item images with their (wrapped) titles underneath."""
  n = len(images)
  if n == 0:
    raise ValueError("image_grid: no images to show")
  ncols = min(ncols, n)
  nrows = -(-n // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * 1.25 * nrows),
                           squeeze=False)
  for i, ax in enumerate(axes.ravel()):
    ax.axis("off")
    if i < n:
      ax.imshow(images[i])
      if i < len(titles):
        ax.set_title(_wrap(str(titles[i]), wrap), fontsize=7, y=-0.05, va="top")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return fig


def _wrap(text: str, width: int, lines: int = 2) -> str:
  words, out, line = text.split(), [], ""
  for w in words:
    if line and len(line) + 1 + len(w) > width:
      out.append(line)
      line = w
    else:
      line = f"{line} {w}".strip()
  out.append(line)
  return "\n".join(out[:lines]) + ("…" if len(out) > lines else "")


def png_data_uri(image: np.ndarray) -> str:
  """A uint8 `[S, S, 3]` image as a `data:image/png;base64,...` URI."""
  buf = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
  return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_grid_html(images: np.ndarray, titles: Sequence[str], notes: Sequence[str] = (),
                    item_ids: Sequence[str] = (), size: int = 96, columns: int | None = None,
                    heading: str = "", subheading: str = "", css_class: str = "mmrec-grid",
                    highlight: Sequence[bool] = ()) -> str:
  """An HTML grid of `<figure>`s (image, title, optional note) for ipywidgets.HTML.

  `columns` fixes the number of images per row (default: as many as the width allows,
  wrapping). `highlight`: per image, whether to frame it (class "mmrec-highlight").
  """
  cells = []
  for i, image in enumerate(images):
    note = f"<br><small>{html.escape(notes[i])}</small>" if i < len(notes) and notes[i] else ""
    item = f' data-item="{html.escape(item_ids[i])}"' if i < len(item_ids) else ""
    lit = i < len(highlight) and highlight[i]
    border = "3px solid #e8590c" if lit else "1px solid #ccc"
    lit_class = ' class="mmrec-highlight"' if lit else ""
    cells.append(
        f'<figure{item}{lit_class} '
        f'style="margin:0;width:{size}px">'
        f'<img src="{png_data_uri(image)}" width="{size}" height="{size}" '
        f'style="image-rendering:pixelated;border:{border};box-sizing:border-box">'
        f'<figcaption style="font-size:10px;line-height:1.2">{html.escape(str(titles[i]))}'
        f'{note}</figcaption></figure>')
  head = f"<div style='font-weight:bold'>{html.escape(heading)}</div>" if heading else ""
  if subheading:
    head += f"<div style='font-size:12px;margin-bottom:4px'>{html.escape(subheading)}</div>"
  repeat = f"repeat({columns},{size}px)" if columns else f"repeat(auto-fill,{size}px)"
  width = f"width:{columns * (size + 6)}px;" if columns else ""
  return (f'<div class="{css_class}" style="{width}">{head}<div style="display:grid;gap:6px;'
          f'grid-template-columns:{repeat}">{"".join(cells)}</div></div>')


def group_shares(item_rows: np.ndarray, groups: np.ndarray) -> dict[str, float]:
  """Share of the recommended items (catalog rows; -1 = none) in head, tail and cold."""
  rows = np.asarray(item_rows).ravel()
  rows = rows[rows >= 0]
  counts = np.bincount(np.asarray(groups)[rows], minlength=len(GROUP_NAMES))
  total = max(len(rows), 1)
  return {name: float(counts[g] / total) for g, name in enumerate(GROUP_NAMES)}


def shares_label(shares: Mapping[str, float]) -> str:
  return " · ".join(f"{name} {shares[name]:.0%}" for name in GROUP_NAMES if name in shares)


def plot_history(history: Mapping[str, Sequence[tuple[int, float]]], keys: Sequence[str] = (),
                 marks: Sequence[int] = (), fig=None):
  """One panel per metric of `history` ({name: [(step, value), ...]}); `marks`: steps to flag."""
  keys = [k for k in (keys or history) if history.get(k)]
  if not keys:
    raise ValueError("plot_history: no logged values to plot")
  fig = fig or plt.figure()
  fig.clear()
  fig.set_size_inches(4 * len(keys), 3)
  for i, key in enumerate(keys):
    ax = fig.add_subplot(1, len(keys), i + 1)
    steps, values = zip(*history[key])
    ax.plot(steps, values, marker=".", lw=1.2)
    for step in marks:
      ax.axvline(step, color="grey", ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_title(key)
  fig.tight_layout()
  return fig


class TrainingMonitor:
  """An `on_log(step, metrics)` callback: a tqdm.auto progress bar and a live metrics plot.

  Keeps every logged value in `history`. `resume(step)` flags the step on the plot and
  continues with a new bar and plot in the cell that runs next (the history stays).
  Outside IPython only the bar and the history are kept.
  """

  def __init__(self, total_steps: int, keys: Sequence[str] = ("loss",), desc: str = "train",
               min_redraw_s: float = 1.0):
    self.keys, self.total, self.min_redraw_s = tuple(keys), int(total_steps), min_redraw_s
    self.desc = desc
    self._drawn_at = -np.inf
    self.history: dict[str, list[tuple[int, float]]] = {}
    self.marks: list[int] = []
    self.bar = self._new_bar(0)
    self._fig = self._handle = None

  def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
    for key, value in metrics.items():
      self.history.setdefault(key, []).append((int(step), float(value)))
    self.bar.update(max(0, step - self.bar.n))
    self.bar.set_postfix({k: f"{metrics[k]:.3g}" for k in self.keys if k in metrics})
    if step >= self.total or time.monotonic() - self._drawn_at >= self.min_redraw_s:
      self._redraw()

  def _new_bar(self, initial: int):
    from tqdm.auto import tqdm
    return tqdm(total=self.total, initial=initial, desc=self.desc)

  def resume(self, step: int) -> None:
    self.marks.append(int(step))
    self.bar.close()
    self.bar = self._new_bar(int(step))
    self._handle = None  # the next redraw displays a new plot where the code now runs

  def close(self) -> None:
    self.bar.close()

  def _redraw(self) -> None:
    try:
      from IPython import get_ipython
      from IPython.display import display
    except ImportError:
      return
    if get_ipython() is None:
      return
    if self._fig is None:
      self._fig = plt.figure()
      plt.close(self._fig)  # shown through the display handle only
    plot_history(self.history, self.keys, self.marks, fig=self._fig)
    if self._handle is None:
      self._handle = display(self._fig, display_id=True)
    else:
      self._handle.update(self._fig)
    self._drawn_at = time.monotonic()


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Projection of the rows of `x` on its top two principal axes, and their variance shares."""
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"pca_2d: need a [N>=2, D] matrix, got shape {x.shape}")
  centred = x - x.mean(axis=0)
  _, s, vt = np.linalg.svd(centred, full_matrices=False)
  var = s ** 2
  ratio = var[:2] / max(var.sum(), np.finfo(float).tiny)
  return centred @ vt[:2].T, ratio


def nearest_rows(features: np.ndarray, row: int, k: int) -> np.ndarray:
  """The `k` rows most cosine-similar to `row` (itself excluded), best first, ties by row."""
  x = np.asarray(features, np.float64)
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  sim = x @ x[row]
  sim[row] = -np.inf
  return np.lexsort((np.arange(len(x)), -sim))[:k]


def projection_plot(points: np.ndarray, labels: Sequence[str], ax=None, title: str = "",
                    palette: Mapping[str, object] | None = None, max_legend: int = 16):
  """A scatter of 2-D points coloured by a categorical label (optional colour per label)."""
  ax = ax or plt.subplots(figsize=(5, 4.5))[1]
  labels = np.asarray(labels).astype(str)
  names = sorted(set(labels.tolist()))
  cmap = plt.get_cmap("tab20", max(len(names), 1))
  for i, name in enumerate(names):
    sel = labels == name
    colour = palette.get(name, cmap(i)) if palette else cmap(i)
    if isinstance(colour, tuple) and len(colour) == 3 and max(colour) > 1:
      colour = tuple(c / 255 for c in colour)
    ax.scatter(points[sel, 0], points[sel, 1], s=6, color=colour, label=name,
               edgecolors="grey" if palette else "none", linewidths=0.2)
  if len(names) <= max_legend:
    ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2 if len(names) > 8 else 1)
  ax.set_title(title)
  ax.set_xticks([])
  ax.set_yticks([])
  return ax


def recall_tail_curve(curves: Mapping[str, Sequence[Mapping[str, float]]], x: str = "aplt@20",
                      y: str = "recall@20", label: str = "beta", ax=None):
  """Recall against tail share, one line per model; each point is labelled by `label`."""
  ax = ax or plt.subplots(figsize=(6, 4))[1]
  every = [(p[x], p[y]) for points in curves.values() for p in points]
  span = np.ptp(np.array(every, float).reshape(-1, 2), axis=0) if every else np.ones(2)
  span = np.where(span > 0, span, 1.0)
  placed = []  # labelled points, scaled to the data's span: a label too close to one is left out
  for c, (name, points) in enumerate(curves.items()):
    xs, ys = [p[x] for p in points], [p[y] for p in points]
    ax.plot(xs, ys, marker="o", label=name)
    for p in points:
      at = np.array([p[x], p[y]], float) / span
      if any(np.abs(at - q).max() < 0.06 for q in placed):
        continue
      placed.append(at)
      ax.annotate(f"{p[label]:g}", (p[x], p[y]), textcoords="offset points", fontsize=7,
                  xytext=(4, 4) if c % 2 == 0 else (4, -10))  # curves alternate above/below
  ax.set_xlabel(f"{x} (share of recommended items outside the head)")
  ax.set_ylabel(y)
  ax.legend()
  ax.grid(alpha=0.3)
  return ax


def grouped_bars(values: Mapping[str, Mapping[str, float]], ax=None, title: str = "",
                 ylabel: str = ""):
  """Bars per label (x axis, in first-seen order), one colour per series: `values[series][label]`."""
  ax = ax or plt.subplots(figsize=(8, 3.5))[1]
  series = list(values)
  labels = list(dict.fromkeys(lab for v in values.values() for lab in v))  # first-seen order
  width = 0.8 / max(len(series), 1)
  x = np.arange(len(labels))
  for i, name in enumerate(series):
    ax.bar(x + i * width - 0.4 + width / 2, [values[name].get(lab, 0.0) for lab in labels],
           width, label=name)
  ax.set_xticks(x, labels, rotation=30, ha="right")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend(fontsize=8)
  return ax


class MetricsTable:
  """Metrics of several models: an HTML table in notebooks (best per column in bold), text elsewhere."""

  LOWER_IS_BETTER = ("gini",)

  def __init__(self, rows: Mapping[str, Mapping[str, float]], keys: Sequence[str] | None = None):
    from mmrec.evaluation.evaluate import TABLE_KEYS
    if not rows:
      raise ValueError("MetricsTable: no rows")
    self.rows = {name: dict(m) for name, m in rows.items()}
    self.keys = tuple(keys or TABLE_KEYS)

  def best(self, key: str) -> str | None:
    values = {n: m[key] for n, m in self.rows.items() if np.isfinite(m.get(key, np.nan))}
    if not values:
      return None
    pick = min if key.startswith(self.LOWER_IS_BETTER) else max
    return pick(values, key=values.get)

  def __repr__(self) -> str:
    from mmrec.evaluation.evaluate import format_table
    return format_table(self.rows, self.keys)

  def _repr_html_(self) -> str:
    best = {k: self.best(k) for k in self.keys}
    head = "".join(f"<th>{html.escape(k)}</th>" for k in self.keys)
    body = []
    for name, m in self.rows.items():
      cells = []
      for k in self.keys:
        v = m.get(k, float("nan"))
        text = "–" if not np.isfinite(v) else f"{v:.4f}"
        cells.append(f"<td><b>{text}</b></td>" if best[k] == name else f"<td>{text}</td>")
      body.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return (f"<table class='mmrec-metrics'><thead><tr><th>model</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def recall_by_label(topk: np.ndarray, targets: Sequence[np.ndarray],
                    item_labels: np.ndarray) -> dict[str, float]:
  """Hit rate of the held-out items, grouped by their label (e.g. category).

  `topk` int `[U, k]` recommended rows; `targets[u]` the held-out rows of user u.
  Each (user, held-out item) pair counts once: hit if the item is in the user's list.
  """
  hits, totals = {}, {}
  labels = np.asarray(item_labels).astype(str)
  for row, target in zip(np.asarray(topk), targets):
    recommended = set(row.tolist())
    for t in np.asarray(target).ravel().tolist():
      lab = labels[t]
      totals[lab] = totals.get(lab, 0) + 1
      hits[lab] = hits.get(lab, 0) + (t in recommended)
  return {lab: hits[lab] / totals[lab] for lab in sorted(totals)}


class FlatTable:
  """A nested dict (e.g. the data report) as a two-column table: dotted key, value."""

  def __init__(self, mapping: Mapping):
    self.items = list(_flatten(mapping))

  def __repr__(self) -> str:
    width = max((len(k) for k, _ in self.items), default=0)
    return "\n".join(f"{k:<{width}}  {_fmt(v)}" for k, v in self.items)

  def _repr_html_(self) -> str:
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                   f"<td>{html.escape(_fmt(v))}</td></tr>" for k, v in self.items)
    return f"<table class='mmrec-flat'>{rows}</table>"


def _flatten(mapping: Mapping, prefix: str = ""):
  for key, value in mapping.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping) and value:
      yield from _flatten(value, name + ".")
    else:
      yield name, value


def _fmt(value) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def abtest_plot(result: Mapping, metrics: Sequence[str] = ("ctr", "conversion",
                "tail_click_share", "click_coverage", "exposure_gini")):
  """An A/B result (`mmrec.evaluation.abtest.run`): each metric per arm with its 95%
  interval (left), and each arm's share of impressions by popularity decile (right)."""
  arms = [result["arms"][label] for label in ("A", "B")]
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
  width, x = 0.4, np.arange(len(metrics))
  for i, arm in enumerate(arms):
    value = np.array([arm[m] for m in metrics])
    err = np.abs(np.array([[arm[f"{m}/ci_low"] for m in metrics],
                           [arm[f"{m}/ci_high"] for m in metrics]]) - value)
    left.bar(x + (i - 0.5) * width, value, width, yerr=err, capsize=3,
             label=f"{'AB'[i]}: {arm['name']}")
  marks = ["*" if result["difference"][m]["significant"] else "" for m in metrics]
  left.set_xticks(x, [f"{m}{s}" for m, s in zip(metrics, marks)], rotation=20, ha="right")
  left.set_title(f"per arm, 95% intervals (* B - A significant; slate {result['k']})")
  left.legend(fontsize=8)
  deciles = np.arange(1, 11)
  for i, arm in enumerate(arms):
    right.bar(deciles + (i - 0.5) * width, arm["exposure_by_decile"], width, label=arm["name"])
  right.set_xticks(deciles, [str(d) for d in deciles])
  right.set_xlabel("popularity decile of the catalog (1: most trained-on)")
  right.set_ylabel("share of impressions")
  right.legend(fontsize=8)
  fig.tight_layout()
  return fig
