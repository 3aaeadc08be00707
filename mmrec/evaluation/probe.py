"""Linear probe: how well do frozen item features predict item attributes?

A direct check of what an encoder learned (the shop draws category, colour and
pattern in the image, and tells material, style, brand and price tier only in
the text). The probe is a ridge-regression classifier on one-hot targets,
solved in closed form with numpy: standardised features, the ridge strength
picked on a validation part of the training items, accuracy on held-out items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from flax import nnx

from mmrec.models.towers import encode_all

RIDGES = tuple(10.0 ** np.arange(-2, 5))  # relative to the number of training items


def split_items(n: int, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """A random (train, test) partition of range(n)."""
  if not 0 < test_share < 1:
    raise ValueError(f"test_share={test_share} must be in (0, 1)")
  order = np.random.default_rng(seed).permutation(n)
  n_test = max(1, round(test_share * n))
  if n - n_test < 2:
    raise ValueError(f"{n} items are too few for a probe with test_share={test_share}")
  return np.sort(order[n_test:]), np.sort(order[:n_test])


def _fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
  """Closed-form ridge of one-hot `y` on `x` with an unpenalised intercept: (W, b)."""
  x_mean, y_mean = x.mean(0), y.mean(0)
  xc = x - x_mean
  gram = xc.T @ xc + ridge * len(x) * np.eye(x.shape[1])
  w = np.linalg.solve(gram, xc.T @ (y - y_mean))
  return w, y_mean - x_mean @ w


def ridge_classifier(x_train: np.ndarray, y_train: np.ndarray, *, seed: int = 0,
                     ridges: Sequence[float] = RIDGES) -> Callable[[np.ndarray], np.ndarray]:
  """A linear classifier fitted on (x_train, int labels y_train); returns `predict(x)`.

  The ridge strength is chosen on a random 20% of the training rows, then the
  classifier is refitted on all of them.
  """
  x_train = np.asarray(x_train, np.float64)
  mean, std = x_train.mean(0), x_train.std(0) + 1e-8
  x = (x_train - mean) / std
  classes = np.unique(y_train)
  onehot = (y_train[:, None] == classes[None, :]).astype(np.float64)
  fit_rows, val_rows = split_items(len(x), 0.2, seed)

  def accuracy(ridge):
    w, b = _fit_ridge(x[fit_rows], onehot[fit_rows], ridge)
    return (classes[(x[val_rows] @ w + b).argmax(1)] == y_train[val_rows]).mean()

  best = max(ridges, key=accuracy)  # the first (weakest) ridge among ties
  w, b = _fit_ridge(x, onehot, best)
  return lambda x_new: classes[(((np.asarray(x_new, np.float64) - mean) / std) @ w + b).argmax(1)]


def linear_probe(features: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], *,
                 test_share: float = 0.3, seed: int = 0) -> dict[str, float]:
  """Test accuracy of a linear probe for every (label, feature set) pair.

  Args:
    features: name -> float [N, D] (e.g. "text", "image").
    labels: attribute name -> int [N].
  Returns:
    {"ATTRIBUTE/FEATURES": accuracy} plus "ATTRIBUTE/majority", the accuracy of
    always answering the most common training value.
  """
  n = {len(v) for v in (*features.values(), *labels.values())}
  if len(n) != 1:
    raise ValueError(f"features and labels must all have one row per item; lengths {sorted(n)}")
  train, test = split_items(n.pop(), test_share, seed)
  out = {}
  for attribute, y in labels.items():
    y = np.asarray(y)
    values, counts = np.unique(y[train], return_counts=True)
    out[f"{attribute}/majority"] = float((y[test] == values[counts.argmax()]).mean())
    for name, x in features.items():
      predict = ridge_classifier(np.asarray(x)[train], y[train], seed=seed)
      out[f"{attribute}/{name}"] = float((predict(np.asarray(x)[test]) == y[test]).mean())
  return out


def encoder_features(text: nnx.Module | None, image: nnx.Module | None, tokens: np.ndarray,
                     images: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
  """Frozen features of every item: "text" (mean-pooled), "image", and "text+image" when both."""
  features = {}
  if text is not None:
    features["text"] = encode_all(text, tokens, batch_size)
  if image is not None:
    features["image"] = encode_all(image, images, batch_size)
  if text is not None and image is not None:
    features["text+image"] = np.concatenate([features["text"], features["image"]], axis=1)
  return features


def format_probe(rows: Mapping[str, Mapping[str, float]]) -> str:
  """A table: one row per (model, features), one column per attribute."""
  keys = sorted({k for r in rows.values() for k in r})
  attributes = list(dict.fromkeys(k.split("/")[0] for k in keys))
  names = list(dict.fromkeys(k.split("/", 1)[1] for k in keys))
  width = max(len("model"), *map(len, rows)) + 2
  lines = [f"{'model':<{width}}{'features':<12}" + "".join(f"{a:>12}" for a in attributes)]
  for model, r in rows.items():
    for name in names:
      if any(f"{a}/{name}" in r for a in attributes):
        cells = "".join(f"{r.get(f'{a}/{name}', float('nan')):>12.3f}" for a in attributes)
        lines.append(f"{model:<{width}}{name:<12}{cells}")
  return "\n".join(lines)
