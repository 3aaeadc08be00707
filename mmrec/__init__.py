"""mmrec: a multimodal two-tower recommender in JAX. `mmrec.load(workdir)` opens a trained
model (mmrec.api); `import mmrec` itself stays light (jax is imported on first use)."""


def __getattr__(name: str):
  if name in ("load", "Model"):
    from mmrec import api
    return getattr(api, name)
  raise AttributeError(f"module 'mmrec' has no attribute {name!r}")
