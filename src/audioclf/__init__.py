"""audioclf: labelled audio sources in, a trained, honestly evaluated audio classifier out."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
