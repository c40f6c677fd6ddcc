"""Sphinx configuration for the dhtkit documentation."""

import dhtkit

project = "dhtkit"
author = "the dhtkit authors"
copyright = "2026, the dhtkit authors"
release = dhtkit.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# No intersphinx: the build must pass without network access.
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
