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
# # 02 · Self-supervised pretraining of the item encoders
#
# A short run of `mmrec.training.pretrain`: masked-token prediction on the product text,
# contrastive learning between two augmented views of each photo, and a sigmoid
# image–text loss, together. Then what the encoders learned: a 2-D projection of the
# item embeddings coloured by category and by colour, a linear probe of the item
# attributes, and the nearest neighbours of an item by text, by image and by both.
#
# The shop draws category, colour and pattern in the photo and tells material, style,
# brand and price only in the text: the image features should separate colours, the
# text features materials.

# %% tags=["parameters"]
import os
import pathlib

SIZE = os.environ.get("MMREC_NB_SIZE", "small")  # tiny | small | medium
STEPS = int(os.environ.get("MMREC_NB_PRETRAIN_STEPS", "300"))  # pretraining steps
WORKDIR = pathlib.Path(os.environ.get("MMREC_NB_WORKDIR", "../runs/notebooks"))
OBJECTIVE = "all"  # text_mlm | image_contrastive | image_text | all
RETRAIN = True  # start from scratch; False resumes an earlier run in the same directory
QUERY_ITEM = 0  # the item whose neighbours are shown
NEIGHBOURS = 8

# %%
# %matplotlib inline
import shutil

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from mmrec import viz
from mmrec.configs import pretrain as pretrain_config
from mmrec.data.shop import vocab as shop_vocab
from mmrec.evaluation import probe
from mmrec.training import pretrain as pretrain_lib

config = pretrain_config.get_config(f"{SIZE},{OBJECTIVE}")
config.data.data_dir = str(WORKDIR / "data")
config.train.steps = STEPS
config.train.log_every = max(10, STEPS // 20)
run_dir = WORKDIR / f"{SIZE}_pretrain_{OBJECTIVE}"
if RETRAIN:
  shutil.rmtree(run_dir, ignore_errors=True)
objectives = [o for o, w in config.pretrain.weights.items() if w > 0]
print(f"{config.name}: {STEPS} steps of {config.train.batch_size} items; "
      f"objectives {objectives}; in {run_dir}")

# %% [markdown]
# ## Pretrain, with the loss of each objective as it goes

# %%
monitor = viz.TrainingMonitor(STEPS, keys=["loss"] + [f"{o}/loss" for o in objectives],
                              desc=config.name)
pretrained = pretrain_lib.pretrain(config, run_dir, on_log=monitor)
monitor.close()
print(f"pretrained to step {pretrained.step}")

# %% [markdown]
# ## What the encoders learned
# Frozen features of every item: the text encoder (mean-pooled), the image encoder, and
# both side by side.

# %%
model, items, catalog = pretrained.model, pretrained.items, pretrained.data.catalog
features = probe.encoder_features(model.text, model.image, items.tokens, items.image)
names = pretrained.data.meta["attribute_values"]
labels = {a: np.asarray(names[a])[catalog.attributes[a]] for a in ("category", "colour")}
fig, axes = plt.subplots(len(features), 2, figsize=(10, 4.2 * len(features)), squeeze=False)
for (name, x), row in zip(features.items(), axes):
  points, share = viz.pca_2d(x)
  for ax, attribute in zip(row, ("category", "colour")):
    palette = shop_vocab.COLOUR_RGB if attribute == "colour" else None
    viz.projection_plot(points, labels[attribute], ax=ax, palette=palette,
                        title=f"{name} features by {attribute} (PCA, {share.sum():.0%} of variance)")
fig.tight_layout()

# %% [markdown]
# A linear probe (`mmrec.evaluation.probe`): test accuracy of a ridge classifier on the
# frozen features, beside always guessing the most common value.

# %%
attributes = {a: catalog.attributes[a] for a in config.probe.attributes}
display(viz.FlatTable(probe.linear_probe(features, attributes, test_share=config.probe.test_share)))

# %% [markdown]
# ## Nearest neighbours of one item
# Cosine similarity of the frozen features: by text, by image, and by both.

# %%
images = items.image
print(f"query: {catalog.title[QUERY_ITEM]}")
viz.image_grid(images[[QUERY_ITEM]], [catalog.title[QUERY_ITEM]], title="query item")
for name, x in features.items():
  rows = viz.nearest_rows(x, QUERY_ITEM, NEIGHBOURS)
  viz.image_grid(images[rows], catalog.title[rows], ncols=NEIGHBOURS,
                 title=f"nearest by {name}")
