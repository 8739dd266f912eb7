"""Deformable spatial pyramid (DSP) matching.

Kim, Liu, Sha, Grauman, "Deformable Spatial Pyramid Matching for Fast Dense
Correspondences", CVPR 2013.

Node level (paper sec. 3.1-3.2): the image is covered by a spatial pyramid of grid cells
(1x1, 2x2, 4x4, 8x8 ...); each cell i takes one translation t_i, minimising

    E(t) = sum_i D_i(t_i) + alpha sum_{(i,j) in N} min(||t_i - t_j||_1, lambda)      (eq. 1)

where D_i(t_i) = 1/z sum_{q in cell i} min(||d1(q) - d2(q + t_i)||_1, tau) is the mean
truncated descriptor distance over the cell (eq. 2-3) and N joins each cell to its parent and to
its 4 neighbours on the same level. The candidate translations are a grid of steps of
``node_factor`` working pixels over +-``search`` pixels, matched on a descriptor image reduced by
``node_factor`` (the coarse search). The graph is loopy and is minimised by loopy BP.

Pixel level (paper sec. 3.3): each pixel q takes a flow t_q in a small window around the
translation t_i of its finest cell, minimising

    sum_q min(||d1(q) - d2(q + t_q)||_1, tau) + beta sum_q ||t_q - t_i||_1
    + alpha_p sum_{(p,q)} min(||t_p - t_q||_1, lambda_p)                               (eq. 4)

also by loopy BP on the pixel grid.

Both levels use the dual-layer BP of SIFT Flow (:func:`lesiontrack.baselines.siftflow.
dual_layer_bp`), which truncates the L1 smoothness per component, min(a|du|, l) + min(a|dv|, l),
instead of min(a ||dt||_1, l): a documented simplification that keeps every message O(L).
Descriptors are dense SIFT as in SIFT Flow (values 0..255). Matching runs at a working
resolution (longest side ``max_side``) and the flow is upsampled to the input size.

Default weights are set for this descriptor scale (L1 distance of 128 values in 0..255: about
1300 for a true match at the working resolution, about 4000 for a wrong one) and were chosen on
smoothly warped skin photos; the pixel-level weights reuse SIFT Flow's.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import sparse

from lesiontrack.baselines.siftflow import (
    descriptor_cost, dual_layer_bp, grid_edges, working_descriptors)
from lesiontrack.imaging import pad_to_stride, resize_flow

log = logging.getLogger(__name__)


def pyramid_cells(height: int, width: int, *, levels: int):
    """Cells of a spatial pyramid over an (H, W) grid.

    Returns
    -------
    assignment : list of ndarray
        Per level, int (H, W) index of the cell holding each position (global node index).
    edges : ndarray
        int (E, 2): parent-child and same-level 4-neighbour pairs of cells.
    """
    rows, cols = np.mgrid[0:height, 0:width]
    assignment, edges, first = [], [], 0
    for level in range(levels):
        cells = 2 ** level
        index = (rows * cells // height) * cells + (cols * cells // width)
        assignment.append(first + index)
        local = grid_edges(cells, cells) + first
        edges.append(local)
        if level:
            # Parent of cell (r, c) on this level is (r // 2, c // 2) on the level above.
            r, c = np.divmod(np.arange(cells * cells), cells)
            parent = previous_first + (r // 2) * (cells // 2) + (c // 2)
            edges.append(np.stack([parent, first + np.arange(cells * cells)], axis=1))
        previous_first = first
        first += cells * cells
    return assignment, np.concatenate(edges)


def dsp(image0: np.ndarray, image1: np.ndarray, *, max_side: int = 256, levels: int = 4,
        node_factor: int = 4, search: int = 48, data_truncation: float = 4000.0,
        alpha: float = 5.0, smooth_truncation: float = 2000.0, node_iterations: int = 40,
        pixel_window: int = 3, beta: float = 20.0, pixel_alpha: float = 2 * 255,
        pixel_truncation: float = 40 * 255, pixel_iterations: int = 15,
        damping: float = 0.5, cell_size: float = 3.0) -> np.ndarray:
    """DSP flow from image0 to image1.

    Parameters
    ----------
    image0, image1 : ndarray
        uint8 (H, W, 3) RGB, same size.
    max_side : int
        Longest side of the working resolution; the flow is upsampled to (H, W).
    levels : int
        Pyramid levels (1x1 ... 2^(levels-1) x 2^(levels-1) cells).
    node_factor : int
        Node-level matching runs on descriptors reduced by this factor; translations are
        multiples of it (working pixels).
    search : int
        Largest node translation per axis, in working pixels.
    data_truncation : float
        tau of eq. 2 (descriptors in 0..255, 128 dims).
    alpha, smooth_truncation : float
        Node smoothness weight per working pixel and its truncation lambda (eq. 1).
    node_iterations : int
        BP sweeps on the cell graph.
    pixel_window : int
        Half window of the pixel-level search around the finest cell's translation.
    beta, pixel_alpha, pixel_truncation, pixel_iterations :
        Pixel-level weights (eq. 4) and BP sweeps.
    damping : float
        Message damping of the synchronous BP.
    cell_size : float
        Dense SIFT cell width at the working resolution.

    Returns
    -------
    ndarray
        float32 (H, W, 2) flow, channel 0 = dx, forward image0 -> image1, in pixels.
    """
    height, width = image0.shape[:2]
    descriptors0, descriptors1 = working_descriptors(image0, image1, max_side=max_side,
                                                     cell_size=cell_size)
    work_height, work_width = descriptors0.shape[:2]

    # ---- node level: coarse search on descriptors averaged over node_factor x node_factor.
    factor = max(1, int(node_factor))
    coarse0 = _block_mean(descriptors0, factor)
    coarse1 = _block_mean(descriptors1, factor)
    coarse_height, coarse_width = coarse0.shape[:2]
    window = max(1, int(round(search / factor)))
    pixel_costs = descriptor_cost(coarse0, coarse1, window=window, truncation=data_truncation)
    levels = max(1, min(int(levels), int(np.log2(max(1, min(coarse_height, coarse_width)))) + 1))
    assignment, edges = pyramid_cells(coarse_height, coarse_width, levels=levels)
    cells = int(assignment[-1].max()) + 1
    labels_count = pixel_costs.shape[1]
    cell_costs = np.zeros((cells, labels_count * labels_count), np.float32)
    flat_costs = pixel_costs.reshape(pixel_costs.shape[0], -1)
    for index in assignment:
        # D_i(t) = mean over the cell of the truncated pixel distances (eq. 2-3).
        members = sparse.csr_matrix(
            (np.ones(index.size, np.float32), (index.ravel(), np.arange(index.size))),
            shape=(cells, index.size))
        counts = np.asarray(members.sum(axis=1)).ravel()
        used = counts > 0
        cell_costs[used] = (members @ flat_costs)[used] / counts[used, None]
    cell_labels = dual_layer_bp(cell_costs.reshape(cells, labels_count, labels_count), edges,
                                alpha=alpha, truncation=smooth_truncation, eta=0.0,
                                step=factor, iterations=node_iterations, damping=damping)
    translation = cell_labels * factor  # working pixels
    finest = assignment[-1]
    log.debug("DSP node level: %d cells, %d labels per axis", cells, labels_count)

    # ---- pixel level: small window around the finest cell's translation (eq. 4).
    rows = np.minimum(np.arange(work_height) // factor, coarse_height - 1)
    cols = np.minimum(np.arange(work_width) // factor, coarse_width - 1)
    offsets = translation[finest[rows[:, None], cols[None, :]]]  # (h, w, 2)
    cost = descriptor_cost(descriptors0, descriptors1, window=pixel_window, offsets=offsets,
                           truncation=data_truncation)
    flat_offsets = offsets.reshape(-1, 2)
    labels = dual_layer_bp(cost, grid_edges(work_height, work_width), alpha=pixel_alpha,
                           truncation=pixel_truncation, eta=beta, offsets=flat_offsets,
                           anchor=flat_offsets.astype(np.float32),
                           iterations=pixel_iterations, damping=damping)
    flow = (flat_offsets + labels).reshape(work_height, work_width, 2).astype(np.float32)
    return resize_flow(flow, (width, height))


def _block_mean(image, factor):
    """Mean over factor x factor blocks (the last partial blocks included)."""
    if factor == 1:
        return image
    padded, _ = pad_to_stride(image, factor, mode="edge")
    shape = (padded.shape[0] // factor, factor, padded.shape[1] // factor, factor, image.shape[2])
    return padded.reshape(shape).mean(axis=(1, 3)).astype(np.float32)
