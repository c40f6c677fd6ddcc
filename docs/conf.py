"""Sphinx configuration for the dhtkit documentation."""

import dhtkit

project = "dhtkit"
author = "the dhtkit authors"
copyright = "2026, the dhtkit authors"  # noqa: A001
release = dhtkit.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
intersphinx_mapping = {"python": ("https://docs.python.org/3", None)}
# The build must pass without network access: intersphinx inventories are
# optional, and a missing one is not a warning worth failing the build for.
intersphinx_disabled_reftypes = ["*"]
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
