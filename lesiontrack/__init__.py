"""Skin lesion detection and tracking on body photos."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that importing the package does not import TensorFlow.
    if name == "detect":
        import importlib

        return importlib.import_module(".detect", __name__)  # callable: detect(image, ...)
    if name == "match":
        import importlib

        return importlib.import_module(".match", __name__)  # callable: match(image0, image1, ...)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
