"""Skin lesion detection and tracking on body photos.

The package exports three functions, imported on first use so that ``import lesiontrack``
does not import TensorFlow:

* ``lesiontrack.detect(image, ...)``: :func:`lesiontrack.detection.detect.detect`;
* ``lesiontrack.match(image0, image1, ...)``: :func:`lesiontrack.tracking.match.match_lesions`;
* ``lesiontrack.estimate_flow(image0, image1, ...)``:
  :func:`lesiontrack.tracking.flow.estimate_flow`.

Subpackages: :mod:`lesiontrack.detection` (the FCN detector), :mod:`lesiontrack.tracking`
(the siamese tracker, dense flow and lesion matching), :mod:`lesiontrack.baselines`
(sliding window, SIFT Flow, DSP, OpenCV flows); shared modules beside them.
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "detect": ("lesiontrack.detection.detect", "detect"),
    "match": ("lesiontrack.tracking.match", "match_lesions"),
    "estimate_flow": ("lesiontrack.tracking.flow", "estimate_flow"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
