"""Deformable spatial pyramid matching on known translations."""
import numpy as np
import pytest

from lesiontrack.baselines.dsp import dsp, pyramid_cells


def test_pyramid_cells_graph():
    assignment, edges = pyramid_cells(8, 8, levels=3)
    assert [int(a.max()) + 1 for a in assignment] == [1, 5, 21]
    # same-level grid edges (0 + 4 + 24) and parent-child edges (4 + 16)
    assert len(edges) == 0 + 4 + 24 + 4 + 16
    # every pixel's level-2 cell has the level-1 cell holding it as parent
    parent_child = {tuple(edge) for edge in edges.tolist()}
    assert all((int(a), int(b)) in parent_child
               for a, b in zip(assignment[1].ravel(), assignment[2].ravel()))


@pytest.mark.parametrize("shift", [(6, -4), (-5, 3)])
def test_dsp_recovers_translation(shifted_pair, shift):
    image0, image1 = shifted_pair(size=96, shift=shift)
    flow = dsp(image0, image1)
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    error = np.hypot(*(flow[16:-16, 16:-16] - np.array(shift, np.float32)).reshape(-1, 2).T)
    assert np.median(error) <= 1.0 and np.mean(error <= 1.0) > 0.9


def test_dsp_identical_images_zero_flow(shifted_pair):
    image0, _ = shifted_pair(size=64)
    flow = dsp(image0, image0)
    assert np.abs(flow[8:-8, 8:-8]).max() <= 1.0


def test_dsp_rejects_mismatched_sizes(shifted_pair):
    image0, _ = shifted_pair(size=64)
    with pytest.raises(ValueError):
        dsp(image0, image0[:, :40])
