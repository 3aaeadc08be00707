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
# # 01 · Data explorer
#
# The embedded fashion shop: products with a drawn photo, a title and a description,
# and users whose purchases follow a long-tailed popularity. This notebook builds the
# dataset (or loads it when it is already on disk), shows how long the tail is, what
# the products look like, and one user's history.
#
# Every cell calls the `mmrec` package; the plots come from `mmrec.viz`.

# %% tags=["parameters"]
import os
import pathlib

SIZE = os.environ.get("MMREC_NB_SIZE", "small")  # shop size: tiny | small | medium
WORKDIR = pathlib.Path(os.environ.get("MMREC_NB_WORKDIR", "../runs/notebooks"))
USER = 0  # the user whose history is shown
GRID_ITEMS = 6  # items per row of the image grids

# %%
# %matplotlib inline
import numpy as np
from IPython.display import display

from mmrec import viz
from mmrec.configs import two_tower
from mmrec.data import clean, dataset, sources
from mmrec.evaluation.metrics import popularity_groups

config = two_tower.get_config(SIZE)
config.data.data_dir = str(WORKDIR / "data")
data = sources.load(config.data, WORKDIR)  # built on first use (a few seconds for `small`)
print(f"{sources.dataset_path(config.data, WORKDIR)}: "
      f"{data.num_items} items, {data.num_users} users")

# %% [markdown]
# ## The data report
# Sizes, density, the long tail of the training counts, modality coverage, and what
# cleaning dropped or repaired (written to `meta.json` when the dataset was built).

# %%
print(clean.format_report(data.meta["report"]["cleaning"]))
display(viz.FlatTable({k: v for k, v in data.meta["report"].items() if k != "cleaning"}))

# %% [markdown]
# ## The long tail
# Items sorted by their training interactions. The head is the top 20% of the warm
# items (the split the evaluation uses); cold items have no training interaction.

# %%
counts = data.train_counts()
groups = popularity_groups(counts, data.is_cold)
viz.long_tail_curve(counts, groups, title=f"{data.meta['name']}: interactions per item");

# %%
display(viz.FlatTable(viz.long_tail_summary(counts, groups)))

# %% [markdown]
# ## What the products look like
# The most popular head items, random tail items and random cold (new) items.

# %%
images, has_image = dataset.decode_images(data.catalog, config.data.image_size)
rng = np.random.default_rng(0)
for g, name in enumerate(viz.GROUP_NAMES):
  members = np.flatnonzero(groups == g)
  if name == "head":
    rows = members[np.argsort(-counts[members], kind="stable")][:GRID_ITEMS]
  else:
    rows = rng.choice(members, min(GRID_ITEMS, len(members)), replace=False)
  if len(rows):
    viz.image_grid(images[rows], data.catalog.title[rows], ncols=GRID_ITEMS,
                   title=f"{name} items")

# %% [markdown]
# ## One user's history
# The training interactions of `USER`, oldest first, then the held-out items the
# evaluation asks the models to find (`valid`, then `test`).

# %%
user_rows = {split: part.item[part.user == USER] for split, part in data.splits.items()}
train_rows = user_rows["train"][-2 * GRID_ITEMS:]
print(f"user {USER}: {len(user_rows['train'])} training interactions "
      f"(the last {len(train_rows)} shown)")
viz.image_grid(images[train_rows], data.catalog.title[train_rows], ncols=GRID_ITEMS,
               title=f"user {USER}: history");

# %%
held_out = np.concatenate([user_rows["valid"], user_rows["test"]])
labels = [f"{s}: {data.catalog.title[r]}" for s in ("valid", "test") for r in user_rows[s]]
if len(held_out):
  viz.image_grid(images[held_out], labels, ncols=GRID_ITEMS, title=f"user {USER}: held out")
