"""Serving: load and query index bundles with numpy and scann only (no jax)."""

from mmrec.serving.bundle import Bundle, BundleError, UnknownItemError, load_bundle

__all__ = ["Bundle", "BundleError", "UnknownItemError", "load_bundle"]
