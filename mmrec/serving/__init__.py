"""Serving: load and query index bundles with numpy and scann only (no jax).

`mmrec.serving.tail` holds the tail-aware re-ranking as pure numpy functions;
`mmrec.serving.verify.verify_bundle` (`mmrec bundle verify`) checks a bundle
with every file's SHA-256, which a plain `load_bundle` skips.
"""

from mmrec.serving.bundle import Bundle, UnknownItemError, load_bundle
from mmrec.serving.format import FORMAT_VERSION, BundleError
from mmrec.serving.tail import head_tail_split

__all__ = ["Bundle", "BundleError", "FORMAT_VERSION", "UnknownItemError", "head_tail_split",
           "load_bundle"]
