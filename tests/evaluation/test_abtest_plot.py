"""The A/B plot shows what the result holds: bar heights, interval whiskers, decile shares."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mmrec import viz  # noqa: E402
from mmrec.evaluation import abtest  # noqa: E402


def _arm(name, scale):
  arm = {"name": name, "users": 10, "exposure_by_decile": list(np.eye(10)[int(scale * 9)])}
  for j, metric in enumerate(abtest.METRICS):
    value = scale * (j + 1) / 10
    arm.update({metric: value, f"{metric}/ci_low": value - 0.01, f"{metric}/ci_high": value + 0.02})
  return arm


def test_abtest_plot_draws_values_intervals_and_deciles():
  result = {"k": 5, "arms": {"A": _arm("popularity", 0.0), "B": _arm("oracle", 1.0)},
            "difference": {m: {"significant": m == "ctr"} for m in abtest.METRICS}}
  metrics = ("ctr", "conversion")
  fig = viz.abtest_plot(result, metrics)
  left, right = fig.axes
  heights = sorted(round(p.get_height(), 6) for p in left.patches)
  assert heights == [0.0, 0.0, 0.1, 0.2]
  whiskers = [seg for coll in left.collections for seg in coll.get_segments()]
  spans = sorted(round(seg[1][1] - seg[0][1], 6) for seg in whiskers)
  assert spans == [0.03] * 4  # from ci_low to ci_high
  assert [t.get_text() for t in left.get_xticklabels()] == ["ctr*", "conversion"]
  shares = [p.get_height() for p in right.patches]
  assert shares[0] == 1.0 and shares[10 + 9] == 1.0 and sum(shares) == 2.0
  plt.close(fig)
