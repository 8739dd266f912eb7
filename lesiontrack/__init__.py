"""Skin lesion detection and tracking on body photos."""

__version__ = "0.1.0"
