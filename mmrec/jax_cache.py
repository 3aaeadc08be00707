"""JAX's persistent compilation cache for mmrec's commands and `mmrec.load`.

A second run of a command reads its XLA programs from disk instead of compiling them
again (on the tiny shop, compiling is most of a command's fixed cost). The cache lives in
`$MMREC_JAX_CACHE`, else `$XDG_CACHE_HOME/mmrec/jax` (`~/.cache/mmrec/jax`); set
`MMREC_JAX_CACHE=off` to compile afresh every time. A cache directory chosen by the user
(`jax_compilation_cache_dir`, or JAX_COMPILATION_CACHE_DIR) is left as it is. As JAX
warns, the cache is trusted code: keep it in a directory only you can write.
"""

from __future__ import annotations

import os
import pathlib

ENV = "MMREC_JAX_CACHE"
OFF = ("", "0", "off", "false", "none")


def cache_dir() -> pathlib.Path | None:
  """Where the cache goes, or None when `MMREC_JAX_CACHE` turns it off."""
  value = os.environ.get(ENV)
  if value is not None:
    return None if value.strip().lower() in OFF else pathlib.Path(value).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "mmrec" / "jax"


def enable() -> str | None:
  """Turns the persistent cache on for every compilation, however short; returns its
  directory (None: off). Safe to call more than once, also after JAX has compiled."""
  import jax
  from jax.experimental.compilation_cache import compilation_cache

  current = jax.config.jax_compilation_cache_dir
  if current:
    return current
  path = cache_dir()
  if path is None:
    return None
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError:  # a read-only home: compile as before rather than fail the command
    return None
  jax.config.update("jax_compilation_cache_dir", str(path))
  # Cache every program: mmrec's are many and small (model init, encoders, scoring).
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  compilation_cache.reset_cache()  # JAX decides once whether to use a cache: decide again
  return str(path)
