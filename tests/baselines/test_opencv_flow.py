"""OpenCV flows: DIS on photos below its minimum size."""
import numpy as np
import pytest

from conftest import _smooth_texture
from lesiontrack.baselines.opencv_flow import DIS_MIN_SIDE, deepflow, dis


@pytest.mark.parametrize("shape", [(8, 8), (8, 11), (11, 8)])
def test_dis_on_photos_smaller_than_its_minimum(shape):
    image = _smooth_texture(*shape, seed=0)
    assert max(shape) < DIS_MIN_SIDE
    flow = dis(image, image)
    assert flow.shape == shape + (2,) and flow.dtype == np.float32
    np.testing.assert_array_equal(flow, 0)  # identical photos: no motion


def test_dis_and_deepflow_recover_a_translation(shifted_pair):
    image0, image1 = shifted_pair(size=64, shift=(3, -2))
    for method in (dis, deepflow):
        flow = method(image0, image1)
        inner = flow[16:-16, 16:-16].reshape(-1, 2)
        np.testing.assert_allclose(np.median(inner, axis=0), [3, -2], atol=0.5)
