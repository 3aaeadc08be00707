"""Python source that a test runs in a subprocess where jax and its kin cannot be imported."""

import textwrap

BLOCKED = ("jax", "jaxlib", "flax", "tensorflow", "tensorflow_datasets", "orbax")


def script(body: str) -> str:
  """`body` (dedented) after a meta-path finder that refuses every module of BLOCKED."""
  return textwrap.dedent(f"""
    import importlib.abc, sys
    BLOCKED = {set(BLOCKED)!r}

    class Block(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
          raise ModuleNotFoundError(f"blocked for this test: {{name}}", name=name)

    sys.meta_path.insert(0, Block())
  """) + textwrap.dedent(body)
