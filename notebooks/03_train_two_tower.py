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
# # 03 · Train the two-tower model
#
# Trains the multimodal two-tower (text + image + item id) with a live progress bar and
# loss plot, interrupts it halfway and resumes from the checkpoint, trains the ID-only
# model beside it, compares both with the popularity baseline, opens the trained model
# again from Python with `mmrec.load`, and exports both as bundles for the retrieval
# explorer (04) and the evaluation (05).

# %% tags=["parameters"]
import os
import pathlib

SIZE = os.environ.get("MMREC_NB_SIZE", "small")  # shop and model size: tiny | small | medium
STEPS = int(os.environ.get("MMREC_NB_STEPS", "400"))  # training steps per model
WORKDIR = pathlib.Path(os.environ.get("MMREC_NB_WORKDIR", "../runs/notebooks"))
RETRAIN = True  # start from scratch; False keeps (and resumes) earlier checkpoints

# %%
# %matplotlib inline
import shutil

from IPython.display import display

from mmrec import jobs, viz
from mmrec.configs import two_tower

config = two_tower.get_config(SIZE)
config.data.data_dir = str(WORKDIR / "data")
config.train.steps = STEPS
config.train.log_every = max(10, STEPS // 20)
# A checkpoint halfway (on a logged step), where the interruption below happens.
HALF = max(1, STEPS // 2 // config.train.log_every) * config.train.log_every
config.train.checkpoint_every = HALF
model_dir = {v: WORKDIR / f"{SIZE}_{v}" for v in ("multimodal", "id_only")}
if RETRAIN:
  for path in model_dir.values():
    shutil.rmtree(path, ignore_errors=True)
print(f"{config.name}: {STEPS} steps of {config.train.batch_size}, "
      f"log every {config.train.log_every}, checkpoint at {HALF}; in {model_dir['multimodal']}")


# %% [markdown]
# ## Train, and stop halfway
# `jobs.train` calls `on_log(step, metrics)` every `log_every` steps; the monitor
# draws the bar and the curves. Raising from the callback stops the run the way a kernel
# interrupt would: the checkpoint written at `HALF` stays.

# %%
class Interrupted(Exception):
  pass


monitor = viz.TrainingMonitor(STEPS, keys=("loss", "grad_norm", "learning_rate"),
                              desc="multimodal")


def stop_halfway(step, metrics):
  monitor(step, metrics)
  if step >= HALF:
    raise Interrupted(step)


try:
  jobs.train(config, model_dir["multimodal"], on_log=stop_halfway)
except Interrupted as stop:
  print(f"interrupted after step {stop}; checkpoints: "
        f"{sorted(p.name for p in (model_dir['multimodal'] / 'checkpoints').iterdir())}")

# %% [markdown]
# ## Resume from the checkpoint
# The same call again restores the latest checkpoint and continues; batches are a pure
# function of (seed, step), so the result equals an uninterrupted run.

# %%
monitor.resume(HALF)
multimodal = jobs.train(config, model_dir["multimodal"], on_log=monitor)
monitor.close()
print(f"trained to step {multimodal.step}")

# %% [markdown]
# ## The ID-only model, for comparison
# Same data and steps; it only knows items by their id, so it cannot place cold items.

# %%
id_config = two_tower.with_variant(config, "id_only")
id_monitor = viz.TrainingMonitor(STEPS, desc="id_only")
id_only = jobs.train(id_config, model_dir["id_only"], on_log=id_monitor)
id_monitor.close()

# %% [markdown]
# ## Against the popularity baseline
# Full ranking on the test split (seen items masked), for all items and for the head,
# tail and cold-start items (`mmrec.evaluation`). Each model's metrics are also written
# to its `metrics.json`.

# %%
rows = {
    "popularity": jobs.evaluate_popularity(config, WORKDIR, data=multimodal.data),
    "multimodal": jobs.evaluate(multimodal, config, model_dir["multimodal"]),
    "id_only": jobs.evaluate(id_only, id_config, model_dir["id_only"]),
}
display(viz.MetricsTable(rows))
recall_keys = ["recall@20", "recall@20/head", "recall@20/tail", "recall@20/cold"]
viz.grouped_bars({name: {k: m.get(k, 0.0) for k in recall_keys} for name, m in rows.items()},
                 title="recall@20: all, head, tail and cold-start items", ylabel="recall");

# %% [markdown]
# ## The trained model from Python
# `mmrec.load(workdir)` reads a trained workdir back (its config from `config.json`, the
# best checkpoint) as one handle: `recommend` for a history of item ids, `similar`,
# `embed_items` for new products, `evaluate` as `mmrec evaluate` does. Catalog embeddings
# are computed once, so later calls take milliseconds.

# %%
import mmrec

model = mmrec.load(model_dir["multimodal"])
catalog = model.data.catalog
history = [str(i) for i in catalog.item_id[:3]]
print(model)
print("history:", "; ".join(catalog.title[:3]))
for rec in model.recommend(history, k=5):
  print(f"  {rec.score:.3f}  {rec.title}")
print("like", catalog.title[0], "->", [r.title for r in model.similar(history[0], k=3)])
new = model.embed_items([{"id": "new-1", "title": "Linen midi dress in sand",
                          "category": "dress"}])
print("a new product's embedding:", new.shape, "; valid recall@20:",
      round(model.evaluate("valid")["recall@20"], 4))

# %% [markdown]
# ## Export the bundles
# The explorer and the evaluation notebooks read these (`docs/bundle.md`).

# %%
for name, trained, cfg in (("multimodal", multimodal, config), ("id_only", id_only, id_config)):
  print(jobs.export(trained, cfg, model_dir[name] / "bundle"))
