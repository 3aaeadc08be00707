"""Where the shop's recall is lost: oracle ceilings and simple content models, on valid.

The shop's generator knows every user's true affinity and the popularity prior it
drew interactions with (`mmrec.data.shop`). On the quality benchmark's split
(benchmarks/quality.py, valid targets, train history masked) this scores:

- oracles: the true affinity / T, alone and with the true prior or log(1 + train count);
- `attribute_lr`: a per-user softmax regression on the items' true attributes
  (one-hot), a learned item bias, full softmax over the warm items, L2 on the user weights;
- `bow`: a linear two-tower over a binary bag of words of title + description (the
  user is its pooled profile), full softmax, full batch; variants toggle the item bias,
  cosine scores, and item ID embeddings.

Nothing here is chosen on test. Writes benchmarks/results/shop_gap.{json,md}.

  python benchmarks/shop_gap.py                  # everything (~25 min on 2 cores)
  python benchmarks/shop_gap.py --only oracle    # seconds
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import quality  # noqa: E402  (the benchmark's split and evaluation)

from mmrec.configs import two_tower  # noqa: E402
from mmrec.data import shop as shop_lib  # noqa: E402
from mmrec.evaluation import evaluate as eval_lib  # noqa: E402

RESULTS = quality.RESULTS
BOW_VARIANTS = {  # name -> options of `bow` (defaults: DEFAULT_BOW)
    "bow/cosine+bias": dict(norm=True),
    "bow/cosine": dict(norm=True, bias=False),
    "bow/dot+bias": dict(),
    "bow/dot": dict(bias=False),
    "bow/dot+bias+ids": dict(ids=True),
}
DEFAULT_BOW = dict(dim=64, lam=1e-5, steps=500, lr=0.02, holdout=0.2, bias=True, norm=False,
                   temperature=0.1, ids=False, id_dropout=0.5)


KEYS = ("recall@20", "ndcg@20", "recall@20/tail", "recall@20/cold")


def _evaluate(scores: np.ndarray, data) -> dict:
  """KEYS on valid, each with its 95% bootstrap interval over users."""
  m = eval_lib.evaluate(lambda users: scores[users], data, split="valid", ks=(20,),
                       history=quality.HISTORY)  # the benchmark's protocol, with intervals
  return {key: m[key] for k in KEYS for key in (k, f"{k}/ci_low", f"{k}/ci_high")}


def _train_matrix(data) -> np.ndarray:
  train = data.splits["train"]
  h = np.zeros((data.num_users, data.num_items), np.float32)
  h[train.user, train.item] = 1.0
  return h


def oracles(data) -> dict[str, dict]:
  cfg = two_tower.get_config("small").data
  config = shop_lib.shop_config(cfg.size, seed=cfg.seed)
  shop = shop_lib.generate(config)
  if list(shop.catalog.item_id) != list(data.catalog.item_id):
    raise ValueError("the benchmark's shop is not the generator's (item ids differ)")
  affinity = shop.affinity() / config.temperature
  log_pop = np.log1p(data.train_counts())
  return {"oracle/affinity+prior": _evaluate(affinity + shop_lib.choice_prior(config), data),
          "oracle/affinity+log_train_count": _evaluate(affinity + log_pop, data),
          "oracle/affinity": _evaluate(affinity, data)}


def _fit(loss, params, steps: int, lr: float):
  opt = optax.adam(lr)

  @jax.jit
  def step(p, state, key):
    value, grads = jax.value_and_grad(loss)(p, key)
    updates, state = opt.update(grads, state)
    return optax.apply_updates(p, updates), state, value

  state = opt.init(params)
  for i in range(steps):
    params, state, value = step(params, state, jax.random.PRNGKey(i + 1))
  return params, float(value)


def _cold_bias(bias: np.ndarray, warm: np.ndarray) -> np.ndarray:
  """Items never trained get the median warm bias."""
  return np.where(warm, bias, np.median(bias[warm]))


def attribute_lr(data, lam: float, steps: int = 400) -> dict:
  x = np.concatenate([np.eye(np.max(v) + 1, dtype=np.float32)[np.asarray(v)]
                      for v in data.catalog.attributes.values()], axis=1)
  h, warm = _train_matrix(data), data.train_counts() > 0
  xj, hj = jnp.asarray(x), jnp.asarray(h)
  mask = jnp.where(jnp.asarray(warm), 0.0, -1e9)
  u = data.num_users

  def loss(p, key):
    logits = (p["w"] + p["w0"]) @ xj.T + p["b"] + mask
    return (-(jax.nn.log_softmax(logits, -1) * hj).sum() / hj.sum()
            + lam * (p["w"] ** 2).sum() / u)

  params = {"w": jnp.zeros((u, x.shape[1])), "w0": jnp.zeros(x.shape[1]),
            "b": jnp.zeros(data.num_items)}
  params, _ = _fit(loss, params, steps, 0.05)
  w = np.asarray(params["w"] + params["w0"])
  return _evaluate(w @ x.T + _cold_bias(np.asarray(params["b"]), warm), data)


def bag_of_words(data, min_count: int = 3) -> np.ndarray:
  """Binary bag of lower-case words of title + description, rows L2-normalised."""
  c = data.catalog
  docs = [set(re.findall(r"[a-z]+", f"{t} {d}".lower())) for t, d in zip(c.title, c.description)]
  counts = collections.Counter(w for d in docs for w in d)
  vocab = {w: i for i, w in enumerate(w for w, n in counts.items() if n >= min_count)}
  x = np.zeros((len(docs), len(vocab)), np.float32)
  for i, d in enumerate(docs):
    x[i, [vocab[w] for w in d if w in vocab]] = 1.0
  return x / np.sqrt(x.sum(1, keepdims=True) + 1e-6)


def bow(data, x: np.ndarray, **options) -> dict:
  o = {**DEFAULT_BOW, **options}
  h, warm = _train_matrix(data), data.train_counts() > 0
  xj, hj, warmj = jnp.asarray(x), jnp.asarray(h), jnp.asarray(warm)
  mask = jnp.where(warmj, 0.0, -1e9)
  n, d = data.num_items, o["dim"]

  def unit(v):
    return v * jax.lax.rsqrt((v * v).sum(-1, keepdims=True) + 1e-12)

  def items(p, keep):
    e = xj @ p["proj"] + (p["ids"] * keep[:, None] if o["ids"] else 0.0)
    return unit(e) if o["norm"] else e

  def users(p, history, item):
    return (history @ item) / jnp.sqrt(history.sum(1, keepdims=True) + 1) @ p["map"]

  def score(p, user, item):
    s = unit(user) @ item.T / o["temperature"] if o["norm"] else user @ item.T
    return s + p["b"] if o["bias"] else s

  def loss(p, key):
    k_hold, k_ids = jax.random.split(key)
    keep_ids = warmj & (jax.random.uniform(k_ids, (n,)) >= o["id_dropout"])
    item = items(p, keep_ids)
    history = (jax.random.uniform(k_hold, hj.shape) >= o["holdout"]) * hj
    targets = hj - history
    log_p = jax.nn.log_softmax(score(p, users(p, history, item), item) + mask, -1)
    l2 = sum((p[k] ** 2).sum() for k in ("proj", "ids") if k in p)
    return -(log_p * targets).sum() / targets.sum() + o["lam"] * l2

  params = {"proj": 0.1 * jax.random.normal(jax.random.PRNGKey(0), (x.shape[1], d)),
            "b": jnp.zeros(n), "map": jnp.eye(d)}
  if o["ids"]:
    params["ids"] = 0.01 * jax.random.normal(jax.random.PRNGKey(3), (n, d))
  params, _ = _fit(loss, params, o["steps"], o["lr"])
  item = items(params, warmj)
  scores = np.array(score(params, users(params, hj, item), item))
  if o["bias"]:
    b = np.asarray(params["b"])
    scores += _cold_bias(b, warm) - b
  return _evaluate(scores, data)


def markdown(rows: dict[str, dict]) -> str:
  """KEYS per row, as `value [ci_low, ci_high]` (95% bootstrap over valid users)."""
  lines = ["| model (valid) | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
  for name, m in rows.items():  # the quality tables' cells
    lines.append(f"| {name} | " + " | ".join(quality._cell(m, k) for k in KEYS) + " |")
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", choices=("oracle", "attribute_lr", "bow"), default=None)
  args = parser.parse_args()
  data = quality.load("shop")
  rows: dict[str, dict] = {}
  if args.only in (None, "oracle"):
    rows.update(oracles(data))
  if args.only in (None, "attribute_lr"):
    for lam in (0.003, 0.01, 0.03):
      name = f"attribute_lr/lam={lam}"
      rows[name] = attribute_lr(data, lam)
      print(name, rows[name], flush=True)
  if args.only in (None, "bow"):
    x = bag_of_words(data)
    for name, options in BOW_VARIANTS.items():
      rows[name] = bow(data, x, **options)
      print(name, rows[name], flush=True)
  suffix = f"_{args.only}" if args.only else ""
  RESULTS.mkdir(exist_ok=True)
  out = {"split": "valid", "command": " ".join(["python", *sys.argv]), "models": rows,
         "bow_defaults": DEFAULT_BOW, "bow_variants": BOW_VARIANTS}
  (RESULTS / f"shop_gap{suffix}.json").write_text(json.dumps(out, indent=2) + "\n")
  (RESULTS / f"shop_gap{suffix}.md").write_text(markdown(rows))
  print(markdown(rows))


if __name__ == "__main__":
  main()
