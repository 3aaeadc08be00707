# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Evaluate: head, tail and cold start
#
# Full-ranking metrics of the popularity baseline, the multimodal and the ID-only model
# on the test split, split by head, tail and cold-start items; the trade-off between
# recall and tail share as the bundle's tail-aware `beta` grows; and where each model
# fails. Uses the models of notebook 03 in the same `WORKDIR` (missing ones are trained);
# `mmrec.load(model_dir)` reads each back with its config and evaluates it.

# %% tags=["parameters"]
import os
import pathlib

SIZE = os.environ.get("MMREC_NB_SIZE", "small")  # tiny | small | medium, as in notebook 03
STEPS = int(os.environ.get("MMREC_NB_STEPS", "400"))  # used only to train a missing model
WORKDIR = pathlib.Path(os.environ.get("MMREC_NB_WORKDIR", "../runs/notebooks"))
BETAS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)  # tail-aware re-ranking strengths to sweep
K = 20  # list length of the curve and the failure analysis

# %%
# %matplotlib inline
import numpy as np
from IPython.display import display

import mmrec
from mmrec import explorer, jobs, viz
from mmrec.configs import two_tower
from mmrec.data import dataset, sources
from mmrec.evaluation import evaluate as eval_lib
from mmrec.evaluation.metrics import popularity_groups

config = two_tower.get_config(SIZE)
config.data.data_dir = str(WORKDIR / "data")
config.train.steps = STEPS
data = sources.load(config.data, WORKDIR)
split = config.eval.split
seen = eval_lib.seen_interactions(data, split)
histories = eval_lib.items_by_user(seen, data.num_users)
targets = eval_lib.items_by_user(data.splits[split], data.num_users)
users = np.array([u for u in range(data.num_users) if len(targets[u])])
counts = data.train_counts()
groups = popularity_groups(counts, data.is_cold)
images, _ = dataset.decode_images(data.catalog, config.data.image_size)
catalog = explorer.Catalog(data.catalog.item_id, data.catalog.title, images, groups, counts)

models, rows = {}, {"popularity": jobs.evaluate_popularity(config, WORKDIR, data=data)}
for variant in ("multimodal", "id_only"):
  cfg = two_tower.with_variant(config, variant)
  models[variant], _ = explorer.load_model(cfg, WORKDIR / f"{SIZE}_{variant}", seen)
  rows[variant] = mmrec.load(WORKDIR / f"{SIZE}_{variant}").evaluate(split)  # as `mmrec evaluate`
print(f"{split} split: {len(users)} users with held-out items; "
      + ", ".join(f"{int(rows['popularity'][f'users@{g}'])} with {g} items"
                  for g in viz.GROUP_NAMES))

# %% [markdown]
# ## Head, tail and cold start
# Recall and NDCG@20 restricted to held-out items of each group (head: the top 20% of warm
# items by training count; tail: the other warm items; cold: no training interaction).
# Best per column in bold.

# %%
keys = [f"{m}@20{g}" for m in ("recall", "ndcg") for g in ("", "/head", "/tail", "/cold")]
display(viz.MetricsTable(rows, keys + ["coverage@20", "aplt@20", "gini@20"]))
viz.grouped_bars({n: {g: m.get(f"recall@20/{g}", 0.0) for g in viz.GROUP_NAMES}
                  for n, m in rows.items()}, title="recall@20 by item group", ylabel="recall");

# %% [markdown]
# ## Recall against tail share as beta grows
# Each point queries the bundle for every test user with `beta` (score - beta * ln(1 +
# popularity)) and measures the lists with `mmrec.evaluation.metrics`. Moving right buys
# tail exposure (APLT@20: share of recommended items outside the head); how much recall
# it costs is the trade-off.

# %%
curves = {name: explorer.beta_sweep(m, users, histories, targets, catalog, BETAS, k=K)
          for name, m in models.items()}
viz.recall_tail_curve(curves, x=f"aplt@{K}", y=f"recall@{K}");
display(viz.MetricsTable({f"{name} beta={p['beta']:g}": p for name, pts in curves.items()
                          for p in pts},
                         [f"recall@{K}", f"recall@{K}/tail", f"recall@{K}/cold",
                          f"coverage@{K}", f"aplt@{K}"]))

# %% [markdown]
# ## Where each model fails
# Hit rate of the held-out items by category, at beta = 0: which kinds of product a model
# does not find.

# %%
topk = {name: explorer.recommend_all(m, users, histories, catalog, K)
        for name, m in models.items()}
by_category = {name: viz.recall_by_label(t, [targets[u] for u in users], data.catalog.category)
               for name, t in topk.items()}
viz.grouped_bars(by_category, title=f"hit rate of held-out items in the top {K}, by category",
                 ylabel="hit rate");

# %% [markdown]
# Cold items never recommended to anyone: a model that cannot place an item from its text
# and image leaves new products invisible. Below, the share of cold items each model
# recommends at least once, and a few that the multimodal model never shows.

# %%
cold = np.flatnonzero(groups == 2)
for name, t in topk.items():
  shown = np.isin(cold, t)
  print(f"{name}: {shown.sum()} of {len(cold)} cold items recommended at least once "
        f"({shown.mean():.0%})")
never = cold[~np.isin(cold, topk["multimodal"])][:12]
if len(never):
  viz.image_grid(images[never], data.catalog.title[never],
                 title="cold items the multimodal model never recommends");

# %% [markdown]
# ## A simulated A/B test
# The shop knows every user's true tastes, so it can play the users: each is shown a slate
# of 10 from arm A or arm B, clicks by the generator's own choice model (with position
# bias) and converts with a probability that grows with true affinity (`mmrec abtest`,
# docs/evaluation.md). Popularity against the multimodal bundle at its default beta (chosen
# on valid), served through the bundle client; each metric with its 95% interval (left), and
# where each arm's impressions fall by item popularity decile (right).

# %%
from IPython.display import Markdown

from mmrec.evaluation import abtest

truth = dataset.load_truth(sources.dataset_path(config.data, WORKDIR))
bundle_arm = abtest.resolve(abtest.Arm("bundle", str(WORKDIR / f"{SIZE}_multimodal" / "bundle")))
ab = abtest.run(abtest.world_from_dataset(data, truth), abtest.Arm("popularity"), bundle_arm,
                k=10, seed=0)
display(Markdown(abtest.markdown(ab)))
viz.abtest_plot(ab);
