"""Start-up before a command's real work: the JAX compilation cache, TFDS, multi-host."""

from __future__ import annotations

import os


_started = False


def start(distributed: bool = True) -> None:
  """Once, before a command's real work: TFDS without progress bars and, with several
  processes (multi-host), all of them joined (`distributed`)."""
  global _started
  if _started:
    return
  _started = True
  _skip_libtpu_without_tpu()
  from mmrec import jax_cache
  jax_cache.enable()  # a second run of a command compiles nothing (mmrec/jax_cache.py)
  import tensorflow_datasets as tfds
  tfds.disable_progress_bar()
  if distributed:
    from mmrec.training import distributed as distributed_lib
    distributed_lib.initialize_from_env()


def _skip_libtpu_without_tpu() -> None:
  """With libtpu installed (the `tpu` extra, for `mmrec compile`), JAX probes for TPUs on
  every start and libtpu prints "could not determine TPU accelerator type" where there is
  none. Unless JAX_PLATFORMS is set, a machine with no TPU chip on its PCI bus runs on
  what it has: cuda,cpu with JAX's CUDA plugin and an NVIDIA GPU, else cpu; with another
  PJRT plugin installed, JAX chooses. `mmrec compile` is unaffected: it loads libtpu's
  topology description itself."""
  if "JAX_PLATFORMS" in os.environ:
    return
  try:
    from jax._src import hardware_utils  # JAX's own PCI check; no backend is started
  except ImportError:
    return
  if hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0:
    return
  plugins = _jax_plugins()
  cuda = {p for p in plugins if p.startswith("xla_cuda") or p.startswith("cuda")}
  if plugins - cuda:
    return
  gpu = bool(cuda) and hardware_utils.has_visible_nvidia_gpu()
  os.environ["JAX_PLATFORMS"] = "cuda,cpu" if gpu else "cpu"


def _jax_plugins() -> set[str]:
  """Names of the installed PJRT plugins, found as JAX finds them."""
  import importlib.metadata
  import pkgutil
  names = {e.name for e in importlib.metadata.entry_points(group="jax_plugins")}
  try:
    import jax_plugins
    names |= {m.name for m in pkgutil.iter_modules(jax_plugins.__path__)}
  except ImportError:
    pass
  return names
