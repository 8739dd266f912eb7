"""SIFT Flow: dense SIFT, dual-layer BP, coarse-to-fine matching on known translations."""
import numpy as np
import pytest

from lesiontrack.baselines.siftflow import (
    dense_sift, descriptor_cost, dual_layer_bp, grid_edges, siftflow)


def interior(flow, margin=16):
    return flow[margin:-margin, margin:-margin]


def test_dense_sift_shape_and_range(shifted_pair):
    image0, _ = shifted_pair(size=64)
    descriptors = dense_sift(image0)
    assert descriptors.shape == (64, 64, 128) and descriptors.dtype == np.float32
    assert descriptors.min() >= 0 and descriptors.max() <= 255


def test_descriptor_cost_is_zero_at_the_true_shift(shifted_pair):
    image0, image1 = shifted_pair(size=64, shift=(2, -1))
    cost = descriptor_cost(dense_sift(image0), dense_sift(image1), window=3)
    best = cost.reshape(len(cost), -1).argmin(axis=1).reshape(64, 64)[16:-16, 16:-16]
    # label index = (dv + 3) * 7 + (du + 3)
    assert np.mean(best == (-1 + 3) * 7 + (2 + 3)) > 0.95


def test_dual_layer_bp_chain_smooths_a_noisy_node():
    # Five nodes on a chain all prefer label (u, v) = (1, -1) except the middle one, whose own
    # data prefers (-1, 1) slightly: smoothness must pull it to its neighbours' label.
    window, nodes = 1, 5
    cost = np.full((nodes, 3, 3), 10.0, np.float32)
    cost[:, 0, 2] = 0.0             # v = -1 (row 0), u = +1 (column 2)
    cost[2] = 10.0
    cost[2, 2, 0] = 8.0             # middle node: v = +1, u = -1
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    labels = dual_layer_bp(cost, edges, alpha=5.0, truncation=100.0, eta=0.0, iterations=20)
    assert labels.tolist() == [[1, -1]] * nodes
    # Without smoothness every node keeps its own best label.
    alone = dual_layer_bp(cost, edges, alpha=0.0, truncation=0.0, eta=0.0, iterations=5)
    assert alone[2].tolist() == [-1, 1]


def test_dual_layer_bp_offsets_align_absolute_flow():
    # Two nodes whose windows are centred 2 labels apart: the same absolute flow must be free.
    cost = np.zeros((2, 5, 5), np.float32)
    cost[0] = 5.0
    cost[0, 2, 4] = 0.0  # node 0: lu = +2 around offset 0 -> absolute u = 2
    offsets = np.array([[0, 0], [2, 0]])
    labels = dual_layer_bp(cost, np.array([[0, 1]]), alpha=10.0, truncation=1000.0, eta=0.0,
                           offsets=offsets, iterations=10)
    assert (offsets + labels).tolist() == [[2, 0], [2, 0]]


def test_grid_edges_count():
    edges = grid_edges(3, 4)
    assert edges.shape == (3 * 3 + 2 * 4, 2)


@pytest.mark.parametrize("shift", [(6, -4), (-3, 5)])
def test_siftflow_recovers_translation(shifted_pair, shift):
    image0, image1 = shifted_pair(size=96, shift=shift)
    flow = siftflow(image0, image1)
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    error = np.hypot(*(interior(flow) - np.array(shift, np.float32)).reshape(-1, 2).T)
    assert np.median(error) <= 1.0 and np.mean(error <= 1.0) > 0.9


def test_siftflow_identical_images_zero_flow(shifted_pair):
    image0, _ = shifted_pair(size=64)
    flow = siftflow(image0, image0)
    assert np.abs(interior(flow, 8)).max() <= 1.0


def test_siftflow_downscales_and_upsamples(shifted_pair):
    image0, image1 = shifted_pair(size=128, shift=(8, -4))
    flow = siftflow(image0, image1, max_side=64)  # matched at half size, flow doubled
    assert flow.shape == (128, 128, 2)
    error = np.hypot(*(interior(flow, 24) - np.array([8, -4], np.float32)).reshape(-1, 2).T)
    assert np.median(error) <= 1.5


def test_siftflow_rejects_mismatched_sizes(shifted_pair):
    image0, _ = shifted_pair(size=64)
    with pytest.raises(ValueError):
        siftflow(image0, image0[:32])
