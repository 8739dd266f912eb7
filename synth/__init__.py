"""Data synthesis for lesion detection and tracking: real lesions blended onto real body photos."""

__version__ = "0.1.0"
