"""mmrec.jax_cache: the persistent compilation cache is written where MMREC_JAX_CACHE says,
read back by a second process, and off when asked (each case in a fresh interpreter)."""

import json
import os
import subprocess
import sys

CODE = """
import json, jax, jax.numpy as jnp
from mmrec import jax_cache
where = jax_cache.enable()
before = jax_cache.enable()  # a second call changes nothing
jax.jit(lambda x: jnp.sin(x) * 3 + 1)(jnp.arange(5.0)).block_until_ready()
print(json.dumps({"where": where, "again": before, "dir": jax.config.jax_compilation_cache_dir}))
"""


def run(env_value):
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env["MMREC_JAX_CACHE"] = env_value
  out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_programs_are_cached_in_the_named_directory(tmp_path):
  cache = tmp_path / "cache"
  first = run(str(cache))
  assert first == {"where": str(cache), "again": str(cache), "dir": str(cache)}
  entries = sorted(p.name for p in cache.iterdir() if p.name.startswith("jit_"))
  assert entries, "nothing was written to the cache"
  run(str(cache))  # the same programs again: read, not written anew
  assert sorted(p.name for p in cache.iterdir() if p.name.startswith("jit_")) == entries


def test_off_leaves_jax_without_a_cache(tmp_path):
  assert run("off") == {"where": None, "again": None, "dir": None}
