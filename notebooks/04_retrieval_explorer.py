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
# # 04 · Retrieval explorer
#
# Pick a user and see their history, then what the multimodal and the ID-only model
# recommend, side by side. The **beta** slider re-ranks with the tail-aware score
# (`score - beta * log popularity`, done by the bundle client) and redraws both lists
# with their head / tail / cold shares; its range is scaled to the scores, ending where the
# lists have turned almost wholly tail and cold. **why?** picks one recommendation: the
# history items that led to it are framed, and listed with their shares of its score, the
# score split exactly over the history (the linear profile tower) and over the item's
# text, image and ID (`mmrec.serving.explain`). The search box finds items like any item
# (an id or words of a title).
#
# Recommendations come from the exported bundles (`mmrec.serving`), queried with the
# trained user tower's embedding of each user. The models are those of notebook 03 in the
# same `WORKDIR`; missing ones are trained and exported here first.

# %% tags=["parameters"]
import os
import pathlib

SIZE = os.environ.get("MMREC_NB_SIZE", "small")  # tiny | small | medium, as in notebook 03
STEPS = int(os.environ.get("MMREC_NB_STEPS", "400"))  # used only to train a missing model
WORKDIR = pathlib.Path(os.environ.get("MMREC_NB_WORKDIR", "../runs/notebooks"))
K = 12  # recommendations per model
BETA_MAX = None  # the slider's end; None: scaled to the scores (`explorer.beta_range`)

# %%
import numpy as np

from mmrec import explorer
from mmrec.configs import two_tower
from mmrec.data import dataset, sources
from mmrec.evaluation import evaluate as eval_lib
from mmrec.evaluation.metrics import popularity_groups

config = two_tower.get_config(SIZE)
config.data.data_dir = str(WORKDIR / "data")
config.train.steps = STEPS
data = sources.load(config.data, WORKDIR)
split = config.eval.split
seen = eval_lib.seen_interactions(data, split)  # what each user had before the test items
histories = eval_lib.items_by_user(seen, data.num_users)  # catalog rows, oldest first
held_out = eval_lib.items_by_user(data.splits[split], data.num_users)
users = [u for u in range(data.num_users) if len(held_out[u]) and len(histories[u])]

# %% [markdown]
# ## The two models, through their bundles
# The bundle holds the item embeddings; each user's query vector comes from the trained
# user tower reading the user's history (the bundle's `search_by_history` is the fallback
# for services without the user tower).

# %%
models = {}
for variant in ("multimodal", "id_only"):
  models[variant], _ = explorer.load_model(two_tower.with_variant(config, variant),
                                           WORKDIR / f"{SIZE}_{variant}", seen)
{name: m.bundle.manifest["model"] for name, m in models.items()}

# %% [markdown]
# ## Explore
# Items carry their group (head, tail or cold) and training count under the title.

# %%
images, _ = dataset.decode_images(data.catalog, config.data.image_size)
counts = data.train_counts()
catalog = explorer.Catalog(data.catalog.item_id, data.catalog.title, images,
                           popularity_groups(counts, data.is_cold), counts)
app = explorer.RetrievalExplorer(models, catalog, histories, users, k=K, beta_max=BETA_MAX)
app.widget

# %% [markdown]
# ## Why this recommendation?
# The explanation behind the **why?** box, as the bundle client (and the HTTP service's
# `/v1/recommend?explain=true`) returns it: with the exact `linear_profile` method the
# history contributions, the tower's prior and the popularity term add up to the score.

# %%
name, row = app.chosen
e = app.explain(name, app.user.value, row, top=None)
{"method": e["method"], "score": e["score"],
 "sum of terms": sum(h["contribution"] for h in e["history"]) + e["prior"] + e["popularity"],
 "top history": [(catalog.titles[catalog.row[h["id"]]], round(h["share"], 3))
                 for h in e["history"][:5]],
 "modalities": e["modalities"]}
