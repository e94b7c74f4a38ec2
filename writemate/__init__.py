"""Writemate: text to realistic handwriting and handwriting back to text (Graves 2013)."""

from writemate.loading import bundled, load

__version__ = "0.1.0"
__all__ = ["load", "bundled", "__version__"]
