"""The package: exported functions, one direction of import, no side effects at import."""
import subprocess
import sys
import types

import pytest


def _run(code):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_package_import_does_not_load_tensorflow():
    code = ("import sys, lesiontrack; lesiontrack.estimate_flow; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert _run(code) == "False False"


def test_exports_are_plain_functions():
    import lesiontrack
    from lesiontrack.detection import detect as detect_module
    from lesiontrack.tracking import flow, match

    assert lesiontrack.detect is detect_module.detect
    assert lesiontrack.match is match.match_lesions
    assert lesiontrack.estimate_flow is flow.estimate_flow
    assert all(isinstance(getattr(lesiontrack, name), types.FunctionType)
               for name in lesiontrack.__all__)
    for module in (detect_module, flow, match):
        assert type(module) is types.ModuleType and not callable(module)
    with pytest.raises(AttributeError, match="no attribute 'tracker'"):
        lesiontrack.tracker  # noqa: B018


def test_imports_have_no_side_effects():
    code = """
import os, sys
import matplotlib
backend = matplotlib.rcParams._get_backend_or_none()
os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
import lesiontrack.cli, lesiontrack.plots, lesiontrack.training, lesiontrack.evaluate
print(matplotlib.rcParams._get_backend_or_none() == backend,
      "matplotlib.pyplot" in sys.modules, "TF_CPP_MIN_LOG_LEVEL" in os.environ)
"""
    assert _run(code) == "True False False"


def test_flow_and_inference_import_one_way():
    # infer must not import flow (flow dispatches to infer), nor the baselines import either.
    code = """
import sys
import lesiontrack.tracking.infer, lesiontrack.baselines.opencv_flow
print("lesiontrack.tracking.flow" in sys.modules, "lesiontrack.tracking.match" in sys.modules)
"""
    assert _run(code) == "False False"
