"""A simulated A/B test on the embedded shop, whose users' true tastes are known.

Each simulated user is one of the shop's users, with their history (train and
valid interactions, as test evaluation sees them). Users are split at random
(seeded) between arm A and arm B; each is shown a slate of K items from their
arm, served through the bundle client (`Bundle.search_by_history`, the path a
service uses) or by a baseline. The user then acts by the generator's own
choice model (`mmrec.data.shop.behaviour`): the utility of item i is

  utility(u, i) = affinity(u, i) / T + prior_i          (prior: log exposure, shelf, boost)

and the slot at position r (0-based) is clicked with probability

  examine(r) · sigmoid(utility(u, i) - c),   examine(r) = 1 / log2(r + 2)

independently per slot, where c is the median over users of their K-th best
utility (so that an oracle's last slot attracts the median user half the
time). A click converts with probability (affinity / max affinity)^2.

Arms: `popularity` (most trained-on items), `oracle` (top K by the true utility:
nothing can beat it in expectation), or a bundle with tail knobs. Reported per
arm, with 95% bootstrap intervals over the arm's users: CTR and conversion per
impression, tail (non-head) and cold click shares, catalog coverage of clicks,
Gini of exposure; and the difference B - A with a two-sample bootstrap interval
and p-value (the arms hold different users: no pairing).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import numpy as np

from mmrec.data import shop as shop_lib
from mmrec.data.shop import behaviour as shop_behaviour
from mmrec.evaluation import bootstrap
from mmrec.evaluation import metrics as metrics_lib

METRICS = ("ctr", "conversion", "tail_click_share", "cold_click_share", "click_coverage",
           "exposure_gini")
_RATIOS = 4  # the first four are ratios of per-user sums; the last two corpus statistics
MAX_AFFINITY = sum(shop_behaviour.IMPORTANCE.values())
KINDS = ("popularity", "oracle", "bundle")
_CHUNK = 256  # users per block of utilities


@dataclasses.dataclass(frozen=True)
class Arm:
  """What one arm shows: `kind` popularity | oracle | bundle (at `bundle`, a directory,
  searched with `beta` (None: the bundle's default, chosen on valid) and `tail_balance`)."""

  kind: str
  bundle: str | None = None
  beta: float | None = None
  tail_balance: float = 0.0
  default_beta: bool = False  # beta was the bundle's default (`resolve`)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"arm kind {self.kind!r} is not known; choose one of {', '.join(KINDS)}")
    if self.kind == "bundle" and not self.bundle:
      raise ValueError("a bundle arm needs a bundle directory")

  @property
  def name(self) -> str:
    if self.kind != "bundle":
      return self.kind
    knobs = [f"beta={self.beta:g}" if self.beta is not None else "beta=default"]
    knobs += ["the bundle's default"] if self.default_beta else []
    knobs += [f"tail_balance={self.tail_balance:g}"] if self.tail_balance else []
    return f"bundle({', '.join(knobs)})"


def resolve(arm: Arm) -> Arm:
  """A bundle arm without a beta gets the bundle's default (chosen on valid at export)."""
  if arm.kind != "bundle" or arm.beta is not None:
    return arm
  from mmrec.serving import load_bundle
  return dataclasses.replace(arm, beta=load_bundle(arm.bundle).default_beta, default_beta=True)


def parse_arm(spec: str, default_bundle: str | pathlib.Path) -> Arm:
  """`popularity`, `oracle`, or `bundle[=DIR][:beta=B,tail_balance=L]` (DIR default
  `default_bundle`); a bad spec raises ValueError naming it."""
  head, _, knobs = spec.partition(":")
  kind, _, path = head.partition("=")
  options = {}
  for part in filter(None, knobs.split(",")):
    key, _, value = part.partition("=")
    if key not in ("beta", "tail_balance") or kind != "bundle":
      raise ValueError(f"arm {spec!r}: unknown option {key!r} (a bundle arm takes beta=B and "
                       "tail_balance=L)")
    try:
      options[key] = float(value)
    except ValueError:
      raise ValueError(f"arm {spec!r}: {key}={value!r} is not a number") from None
  if path and kind != "bundle":
    raise ValueError(f"arm {spec!r}: only a bundle arm takes =DIR")
  return Arm(kind, str(path or default_bundle) if kind == "bundle" else None, **options)


@dataclasses.dataclass
class World:
  """The simulated shop: true tastes, the choice model's prior, and who has seen what."""

  prefs: dict[str, np.ndarray]  # attribute -> float32 [U, V] (truth.npz)
  attributes: dict[str, np.ndarray]  # attribute -> int [N]
  prior: np.ndarray  # float32 [N], log exposure prior (`shop.choice_prior`)
  temperature: float
  item_ids: np.ndarray  # str [N]
  train_counts: np.ndarray  # int [N]
  is_cold: np.ndarray  # bool [N]
  histories: list[np.ndarray]  # per user, item indices oldest first (non-empty)

  def utility(self, users: np.ndarray) -> np.ndarray:
    return shop_behaviour.affinity(self.prefs, self.attributes, users) / self.temperature \
        + self.prior


def world_from_dataset(data, truth: dict[str, np.ndarray] | None) -> World:
  """The World of an embedded-shop dataset (`mmrec.data.dataset.load_dataset` and its
  `load_truth`); an imported dataset has no ground truth and is refused."""
  from mmrec.evaluation import evaluate
  shop_fields = data.meta.get("shop")
  if truth is None or shop_fields is None:
    raise ValueError(f"dataset {data.meta.get('name', '')!r} has no ground truth (truth.npz and "
                     "meta.json 'shop'): the A/B test simulates the embedded shop only")
  config = shop_lib.ShopConfig(**shop_fields)
  want = np.array([f"SKU-{i:06d}" for i in range(config.num_items)])
  if data.num_items != config.num_items or not (data.catalog.item_id == want).all():
    raise ValueError("the dataset's catalog is not the generated shop's (items differ)")
  if data.num_users != config.num_users:
    raise ValueError(f"the dataset has {data.num_users} users, the shop {config.num_users}")
  seen = evaluate.seen_interactions(data, "test")
  order = np.lexsort((seen.timestamp, seen.user))
  bounds = np.searchsorted(seen.user[order], np.arange(data.num_users + 1))
  items = seen.item[order]
  return World(prefs=truth, attributes=data.catalog.attributes,
               prior=shop_lib.choice_prior(config), temperature=config.temperature,
               item_ids=data.catalog.item_id, train_counts=data.train_counts(),
               is_cold=np.asarray(data.is_cold, bool),
               histories=[items[bounds[u]:bounds[u + 1]] for u in range(data.num_users)])


def slates(arm: Arm, world: World, users: np.ndarray, k: int) -> np.ndarray:
  """int64 [len(users), k] item indices shown to `users` (-1: an empty slot), best first,
  never an item of the user's history."""
  users = np.asarray(users, np.int64)
  if not len(users):
    return np.zeros((0, k), np.int64)
  if arm.kind == "bundle":
    return _bundle_slates(arm, world, users, k)

  def top(chunk):
    history = [world.histories[u] for u in chunk]
    if arm.kind == "popularity":
      scores = np.broadcast_to(world.train_counts.astype(np.float64),
                               (len(chunk), len(world.prior)))
    else:
      scores = world.utility(chunk)
    return metrics_lib.masked_topk(scores, history, k)

  return _by_chunks(top, users)


def _by_chunks(fn, users: np.ndarray, *columns: np.ndarray) -> np.ndarray:
  """fn(users[chunk], *columns[chunk]) over chunks of (>= 1) users, concatenated (bounded memory:
  a chunk's utilities are [CHUNK, N])."""
  parts = [fn(users[s:s + _CHUNK], *(c[s:s + _CHUNK] for c in columns))
           for s in range(0, len(users), _CHUNK)]
  return np.concatenate(parts)


def _bundle_slates(arm: Arm, world: World, users: np.ndarray, k: int) -> np.ndarray:
  from mmrec.serving import load_bundle
  bundle = load_bundle(arm.bundle)
  index = {item_id: i for i, item_id in enumerate(world.item_ids.tolist())}
  out = np.full((len(users), k), -1, np.int64)
  for row, u in enumerate(users):  # one request per user, as a service receives them
    ids, _ = bundle.search_by_history(world.item_ids[world.histories[u]].tolist(), k,
                                      beta=arm.beta, tail_balance=arm.tail_balance)
    out[row] = [index.get(i, -1) for i in ids.tolist()]
  return out


@dataclasses.dataclass
class ArmLog:
  """What the users of one arm were shown and did; rows are users."""

  slates: np.ndarray  # int64 [n, k], -1 empty
  clicks: np.ndarray  # bool [n, k]
  conversions: np.ndarray  # bool [n, k]


def simulate(world: World, users: np.ndarray, shown: np.ndarray, threshold: float,
             rng: np.random.Generator) -> ArmLog:
  """Clicks and conversions of `users` shown `shown` [n, k] (see the module docstring)."""
  valid = shown >= 0
  safe = np.maximum(shown, 0)
  affinity = _by_chunks(lambda chunk, rows: np.take_along_axis(
      shop_behaviour.affinity(world.prefs, world.attributes, chunk), rows, axis=1), users, safe)
  utility = affinity / world.temperature + world.prior[safe]
  examine = 1.0 / np.log2(np.arange(shown.shape[1]) + 2.0)
  p_click = examine / (1.0 + np.exp(threshold - utility))
  clicks = valid & (rng.random(shown.shape) < p_click)
  p_convert = np.clip(affinity / MAX_AFFINITY, 0.0, 1.0) ** 2
  conversions = clicks & (rng.random(shown.shape) < p_convert)
  return ArmLog(shown, clicks, conversions)


def click_threshold(world: World, users: np.ndarray, k: int) -> float:
  """c: the median over `users` of their K-th best utility among unseen items."""
  best = slates(Arm("oracle"), world, users, k)[:, -1:]
  kth = _by_chunks(lambda chunk, rows: np.take_along_axis(world.utility(chunk), rows, axis=1),
                   users, best)
  return float(np.median(kth))


def arm_statistic(log: ArmLog, world: World) -> bootstrap.Statistic:
  """Resampling counts [b, n] -> the METRICS of the arm's resampled users [b, 6]."""
  n_items = len(world.prior)
  head = metrics_lib.popularity_groups(world.train_counts, world.is_cold) == metrics_lib.HEAD
  valid, safe = log.slates >= 0, np.maximum(log.slates, 0)
  tail_clicks = log.clicks & ~head[safe]
  cold_clicks = log.clicks & world.is_cold[safe]
  sums = np.stack([log.clicks.sum(1), log.conversions.sum(1), tail_clicks.sum(1),
                   cold_clicks.sum(1)], 1).astype(np.float64)
  per = np.stack([valid.sum(1), valid.sum(1), log.clicks.sum(1), log.clicks.sum(1)], 1)
  per = per.astype(np.float64)
  shown = bootstrap.user_item_matrix([s[s >= 0] for s in log.slates], n_items)
  clicked = bootstrap.user_item_matrix([s[c] for s, c in zip(log.slates, log.clicks)], n_items)

  def statistic(w):
    with np.errstate(invalid="ignore", divide="ignore"):
      ratios = (w @ sums) / (w @ per)
    clicks_by_item = np.asarray(clicked.T @ w.T).T
    exposure = np.asarray(shown.T @ w.T).T
    return np.concatenate([ratios, (clicks_by_item > 0).mean(1, keepdims=True),
                           bootstrap.gini_rows(exposure)[:, None]], axis=1)

  return statistic


def exposure_by_decile(log: ArmLog, world: World) -> np.ndarray:
  """float [10]: share of the arm's impressions on each popularity decile of the catalog
  (decile 0: the most trained-on 10% of items; ties by lower index)."""
  order = np.lexsort((np.arange(len(world.train_counts)), -world.train_counts))
  decile = np.empty(len(order), np.int64)
  decile[order] = np.arange(len(order)) * 10 // len(order)
  shown = log.slates[log.slates >= 0]
  return np.bincount(decile[shown], minlength=10) / max(len(shown), 1)


def run(world: World, arm_a: Arm, arm_b: Arm, *, k: int = 10, seed: int = 0,
        users: Sequence[int] | None = None, draws: int = bootstrap.DRAWS) -> dict:
  """The A/B test of `arm_a` against `arm_b` on `users` (default all with a history).

  Returns {"arms": {"A"/"B": {name, users, METRIC, METRIC/ci_low, METRIC/ci_high,
  exposure_by_decile}}, "difference": {METRIC: {difference (B - A), ci_low, ci_high, p,
  significant}}, "k", "seed", "threshold"}.
  """
  if k < 1:
    raise ValueError(f"slate size k={k} must be >= 1")
  pool = np.array([u for u in range(len(world.histories)) if len(world.histories[u])]
                  if users is None else users, np.int64)
  if len(pool) < 4:
    raise ValueError(f"the A/B test needs at least 4 users with a history, got {len(pool)}")
  split_seed, click_seed, boot_seed = np.random.SeedSequence(seed).spawn(3)
  order = np.random.default_rng(split_seed).permutation(pool)
  groups = {"A": np.sort(order[:len(order) // 2]), "B": np.sort(order[len(order) // 2:])}
  threshold = click_threshold(world, pool, k)
  rng = np.random.default_rng(click_seed)
  arm_a, arm_b = resolve(arm_a), resolve(arm_b)
  arms, stats = {}, {}
  boot_a, boot_b, boot_d = (int(s.generate_state(1)[0]) for s in boot_seed.spawn(3))
  for (label, arm), boot in zip((("A", arm_a), ("B", arm_b)), (boot_a, boot_b)):
    members = groups[label]
    log = simulate(world, members, slates(arm, world, members, k), threshold, rng)
    stat = stats[label] = arm_statistic(log, world)
    point = stat(np.ones((1, len(members)), np.float32))[0]
    samples = bootstrap.draws_of(stat, len(members), draws, boot)
    low, high = bootstrap.percentile_interval(samples[:, :_RATIOS])
    c_low, c_high = bootstrap.centred_interval(samples[:, _RATIOS:], point[_RATIOS:])
    low, high = np.concatenate([low, c_low]), np.concatenate([high, c_high])
    arms[label] = {"name": arm.name, "users": int(len(members)),
                   "exposure_by_decile": exposure_by_decile(log, world).tolist()}
    for j, metric in enumerate(METRICS):
      arms[label].update({metric: float(point[j]), f"{metric}/ci_low": float(low[j]),
                          f"{metric}/ci_high": float(high[j])})
  diff = bootstrap.two_sample_difference(stats["B"], len(groups["B"]), stats["A"],
                                         len(groups["A"]), draws, boot_d,
                                         corpus=np.arange(len(METRICS)) >= _RATIOS)
  difference = {
      metric: {"difference": float(diff["difference"][j]), "ci_low": float(diff["ci_low"][j]),
               "ci_high": float(diff["ci_high"][j]), "p": float(diff["p"][j]),
               "significant": bool(not diff["ci_low"][j] <= 0 <= diff["ci_high"][j])}
      for j, metric in enumerate(METRICS)}
  return {"arms": arms, "difference": difference, "k": k, "seed": seed,
          "threshold": threshold}


def run_in_workdir(config, workdir: str | pathlib.Path, arm_a: Arm, arm_b: Arm, *,
                   k: int = 10, seed: int = 0, draws: int = bootstrap.DRAWS) -> dict:
  """`run` on the configured embedded-shop dataset; writes WORKDIR/abtest.json."""
  import json
  from mmrec.data import dataset, sources
  data = sources.load(config.data, workdir)
  truth = dataset.load_truth(sources.dataset_path(config.data, workdir))
  result = run(world_from_dataset(data, truth), arm_a, arm_b, k=k, seed=seed, draws=draws)
  result["arm_specs"] = {"A": dataclasses.asdict(arm_a), "B": dataclasses.asdict(arm_b)}
  result["dataset"] = data.meta.get("name", "")
  path = pathlib.Path(workdir) / "abtest.json"
  path.write_text(json.dumps(result, indent=2, sort_keys=True))
  return result


def markdown(result: dict) -> str:
  """The result as a Markdown table: each metric per arm [interval], and B - A."""
  a, b = result["arms"]["A"], result["arms"]["B"]
  lines = [f"| metric | A: {a['name']} ({a['users']} users) | B: {b['name']} ({b['users']} "
           "users) | B - A [95% interval] | p |", "|---|---|---|---|---|"]
  for metric in METRICS:
    d = result["difference"][metric]
    cells = [f"{arm[metric]:.4f} [{arm[f'{metric}/ci_low']:.4f}, {arm[f'{metric}/ci_high']:.4f}]"
             for arm in (a, b)]
    mark = " *" if d["significant"] else ""
    lines.append(f"| {metric} | {cells[0]} | {cells[1]} | {d['difference']:+.4f} "
                 f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]{mark} | {d['p']:.3f} |")
  return "\n".join(lines)
