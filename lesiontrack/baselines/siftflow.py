"""SIFT Flow: dense correspondence by discrete matching of dense SIFT descriptors.

Liu, Yuen, Torralba, Sivic, Freeman, "SIFT Flow: dense correspondence across different scenes",
ECCV 2008; Liu, Yuen, Torralba, "SIFT Flow: dense correspondence across scenes and its
applications", TPAMI 33(5), 2011.

The flow w(p) = (u(p), v(p)) minimises (TPAMI eq. 3)

    E(w) = sum_p min(||s1(p) - s2(p + w(p))||_1, t)
         + sum_p eta (|u(p)| + |v(p)|)
         + sum_{(p,q) in N} min(alpha |u(p) - u(q)|, d) + min(alpha |v(p) - v(q)|, d)

over integer flows, with dual-layer loopy belief propagation (TPAMI sec. 3.2): the horizontal
and the vertical flow are two coupled layers of nodes, linked at each pixel by the data term, so
that each message costs O(L) (truncated L1 distance transform, Felzenszwalb and Huttenlocher
2006) instead of O(L^2), and each data-term message O(L^2) instead of O(L^4). The search runs
coarse to fine on a pyramid of SIFT images (TPAMI sec. 3.3): a large window at the top level, a
small one around the upsampled coarser flow at each finer level.

Defaults follow the released SIFT Flow code (descriptors quantised to 0..255, hence the
factor 255): alpha = 2 * 255, d = 40 * 255, eta = 0.005 * 255, 4 pyramid levels, a search window
of +-10 at the top level and +-2 below, 60 BP iterations at the top level and 30 below; the data
term is not truncated there (t = infinity), which is the default here too.

For speed the matching runs at a working resolution (longest side ``max_side``, 256 px by
default) and the flow is upsampled (bilinear) and rescaled to the input resolution; one pixel of
flow at the working resolution is ``input_side / max_side`` pixels at full resolution.
Messages are updated synchronously for all nodes at once (vectorised), with damping.

:func:`dual_layer_bp` works on any graph of nodes with 2-D translation labels, and is also the
optimiser of the deformable spatial pyramid (:mod:`lesiontrack.baselines.dsp`).
"""
from __future__ import annotations

import logging

import cv2
import numpy as np
from scipy import sparse

from lesiontrack.imaging import resize_flow, resize_image

log = logging.getLogger(__name__)

SIFT_CHANNELS = 128


# --------------------------------------------------------------------------- descriptors


def dense_sift(image: np.ndarray, *, cell_size: float = 3.0) -> np.ndarray:
    """SIFT descriptor at every pixel (upright, one scale).

    Parameters
    ----------
    image : ndarray
        uint8 (H, W, 3) RGB or (H, W) grey.
    cell_size : float
        Width in pixels of each of the 4x4 spatial cells of the descriptor (3 in SIFT Flow).

    Returns
    -------
    ndarray
        float32 (H, W, 128), values 0..255 (OpenCV's quantisation of the normalised descriptor).
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    height, width = grey.shape
    # OpenCV's SIFT cell width is 1.5 * size (SIFT_DESCR_SCL_FCTR * size / 2), so
    # size = cell_size / 1.5; angle 0 gives upright descriptors as in SIFT Flow.
    size = float(cell_size) / 1.5
    keypoints = [cv2.KeyPoint(float(x), float(y), size, 0.0)
                 for y in range(height) for x in range(width)]
    kept, descriptors = cv2.SIFT_create().compute(grey, keypoints)
    if descriptors is None or len(kept) != height * width:
        # OpenCV drops no keypoint inside the image; guard against a change of behaviour.
        raise RuntimeError("dense SIFT lost keypoints")
    return descriptors.reshape(height, width, SIFT_CHANNELS).astype(np.float32)


def sift_pyramid(descriptors: np.ndarray, *, levels: int) -> list[np.ndarray]:
    """Pyramid of SIFT images, finest first: smooth and halve (TPAMI sec. 3.3)."""
    pyramid = [descriptors]
    for _ in range(levels - 1):
        previous = pyramid[-1]
        height, width = previous.shape[:2]
        if min(height, width) < 8:
            break
        smooth = cv2.GaussianBlur(previous, (0, 0), 0.67)
        pyramid.append(np.ascontiguousarray(smooth[::2, ::2]))
    return pyramid


def descriptor_cost(descriptors0: np.ndarray, descriptors1: np.ndarray, *, window: int,
                    offsets: np.ndarray | None = None, step: int = 1,
                    truncation: float | None = None) -> np.ndarray:
    """Data term of every pixel for every candidate flow in a window around an offset.

    Parameters
    ----------
    descriptors0, descriptors1 : ndarray
        float32 (H, W, C) and (H1, W1, C) descriptor images.
    window : int
        Half size of the search window, in labels; L = 2 * window + 1 labels per axis.
    offsets : ndarray, optional
        int (H, W, 2) centre of each pixel's window (dx, dy) in pixels; zero if omitted.
    step : int
        Pixels between neighbouring labels.
    truncation : float, optional
        t in min(||s1(p) - s2(p + w)||_1, t); no truncation if omitted.

    Returns
    -------
    ndarray
        float32 (H * W, L, L): cost[p, iv, iu] of flow offset(p) + step * (iu - window,
        iv - window). Targets outside image1 compare with its nearest border descriptor.
    """
    height, width = descriptors0.shape[:2]
    height1, width1 = descriptors1.shape[:2]
    labels = np.arange(-window, window + 1) * step
    ys, xs = np.mgrid[0:height, 0:width]
    if offsets is not None:
        xs = xs + offsets[..., 0]
        ys = ys + offsets[..., 1]
    flat0 = descriptors0.reshape(-1, descriptors0.shape[2])
    cost = np.empty((height * width, labels.size, labels.size), np.float32)
    for iv, dv in enumerate(labels):
        rows = np.clip(ys + dv, 0, height1 - 1).ravel()
        for iu, du in enumerate(labels):
            cols = np.clip(xs + du, 0, width1 - 1).ravel()
            target = descriptors1[rows, cols]
            np.subtract(target, flat0, out=target)
            cost[:, iv, iu] = np.abs(target, out=target).sum(axis=1)
    if truncation is not None:
        np.minimum(cost, truncation, out=cost)
    return cost


# --------------------------------------------------------------------------- belief propagation


def grid_edges(height: int, width: int) -> np.ndarray:
    """Undirected 4-neighbour edges of an (H, W) grid, as int (E, 2) flat pixel indices."""
    index = np.arange(height * width).reshape(height, width)
    horizontal = np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], axis=1)
    vertical = np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], axis=1)
    return np.concatenate([horizontal, vertical])


def _distance_transform_message(h, slope, truncation, shifted, index, extra):
    """min_l' h(l') + min(slope |l - l'|, truncation) at shifted labels, O(L) per edge.

    Arrays are label-major: h (L, E); ``shifted`` are the edges whose receiver window is
    offset from the sender's, with their (L, E') label ``index`` and linear ``extra`` cost.
    """
    g = h.copy()
    for k in range(1, g.shape[0]):  # forward pass of the 1-D L1 distance transform
        np.minimum(g[k], g[k - 1] + slope, out=g[k])
    for k in range(g.shape[0] - 2, -1, -1):  # backward pass
        np.minimum(g[k], g[k + 1] + slope, out=g[k])
    if shifted.size:
        # Beyond the sender's last label the L1 distance transform continues linearly.
        g[:, shifted] = g[index, shifted[None, :]] + extra
    np.minimum(g, h.min(axis=0) + truncation, out=g)
    g -= g.min(axis=0)
    return g


def dual_layer_bp(data_cost: np.ndarray, edges: np.ndarray, *, alpha: float, truncation: float,
                  eta: float, offsets: np.ndarray | None = None, anchor: np.ndarray | None = None,
                  step: float = 1.0, iterations: int = 30, damping: float = 0.5) -> np.ndarray:
    """Minimise a SIFT-Flow-type energy over 2-D translation labels by dual-layer loopy BP.

    Energy (SIFT Flow TPAMI eq. 3, generalised to any graph and per-node label windows):

        sum_p D_p(lu_p, lv_p) + eta sum_p (|fu_p - au_p| + |fv_p - av_p|)
        + sum_{(p,q)} min(alpha |fu_p - fu_q|, d) + min(alpha |fv_p - fv_q|, d)

    with flow fu_p = step * (ou_p + lu_p), lu_p in -W..W (same for v), offsets o and anchor a.
    The u and v labels of a node are two nodes linked by D_p (TPAMI sec. 3.2).

    Parameters
    ----------
    data_cost : ndarray
        float32 (N, L, L), D_p indexed [node, v label, u label]; L = 2 W + 1 odd.
    edges : ndarray
        int (E, 2) undirected edges between nodes.
    alpha, truncation, eta : float
        Smoothness slope and truncation d (per pixel of flow difference) and the weight of the
        small-displacement (or anchor) term.
    offsets : ndarray, optional
        int (N, 2) (ou, ov) window centre of each node, in labels; zero if omitted.
    anchor : ndarray, optional
        float (N, 2) (au, av) in pixels the eta term pulls towards; zero (SIFT Flow) if omitted.
    step : float
        Pixels per label.
    iterations : int
        Synchronous message-passing sweeps.
    damping : float
        Weight of the previous message in each update (0 = none), against oscillation of
        synchronous min-sum BP on loopy graphs.

    Returns
    -------
    ndarray
        int (N, 2) labels (lu, lv) in -W..W minimising each node's joint belief.
    """
    data_cost = np.asarray(data_cost, np.float32)
    nodes, size, size_u = data_cost.shape
    if size != size_u or size % 2 != 1:
        raise ValueError(f"data_cost must be (N, L, L) with odd L, got {data_cost.shape}")
    window = size // 2
    labels = np.arange(-window, window + 1)
    offsets = np.zeros((nodes, 2), np.int64) if offsets is None else np.asarray(offsets, np.int64)
    anchor = np.zeros((nodes, 2), np.float32) if anchor is None else np.asarray(anchor, np.float32)
    # Label-major layout (labels first) so that every reduction over labels is elementwise.
    cost = np.ascontiguousarray(data_cost.transpose(1, 2, 0))  # (Lv, Lu, N)
    # Small-displacement term eta |w(p)| (TPAMI eq. 3, second sum), one per layer.
    unary = [(eta * np.abs(step * (offsets[None, :, axis] + labels[:, None])
                           - anchor[None, :, axis])).astype(np.float32) for axis in (0, 1)]
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    source = np.concatenate([edges[:, 0], edges[:, 1]])
    target = np.concatenate([edges[:, 1], edges[:, 0]])
    count = source.size
    reverse = (np.arange(count) + edges.shape[0]) % max(count, 1)
    # incoming[:, q] = sum of messages on edges ending at q: one sparse product per layer.
    scatter = sparse.csr_matrix((np.ones(count, np.float32), (np.arange(count), target)),
                                shape=(count, nodes))
    slope = float(alpha) * float(step)
    shifts = []
    for axis in (0, 1):
        # Receiver label l_q aligns with sender label l_q + o_q - o_p (same absolute flow).
        delta = offsets[target, axis] - offsets[source, axis]
        shifted = np.flatnonzero(delta)
        position = labels[:, None] + delta[None, shifted] + window
        clamped = np.clip(position, 0, size - 1)
        shifts.append((shifted, clamped, (slope * np.abs(position - clamped)).astype(np.float32)))
    messages = [np.zeros((size, count), np.float32) for _ in (0, 1)]
    dual = [np.zeros((size, nodes), np.float32) for _ in (0, 1)]  # data-term messages into u, v

    def incoming(axis):
        return np.asarray(messages[axis] @ scatter)

    for _ in range(int(iterations)):
        belief_u = unary[0] + incoming(0)
        belief_v = unary[1] + incoming(1)
        # Messages across the data term: u-node -> v-node and v-node -> u-node, O(L^2) each.
        to_v = (cost + belief_u[None, :, :]).min(axis=1)
        to_u = (cost + belief_v[:, None, :]).min(axis=0)
        new_dual = [to_u - to_u.min(axis=0), to_v - to_v.min(axis=0)]
        for axis, belief in ((0, belief_u), (1, belief_v)):
            h = (belief + dual[axis])[:, source] - messages[axis][:, reverse]
            update = _distance_transform_message(h, slope, truncation, *shifts[axis])
            messages[axis] *= damping
            messages[axis] += (1.0 - damping) * update
            dual[axis] *= damping
            dual[axis] += (1.0 - damping) * new_dual[axis]
    belief = (cost + (unary[1] + incoming(1))[:, None, :]
              + (unary[0] + incoming(0))[None, :, :]).reshape(size * size, nodes)
    best = belief.argmin(axis=0)
    return np.stack([best % size - window, best // size - window], axis=1)


# --------------------------------------------------------------------------- SIFT Flow


def working_descriptors(image0, image1, *, max_side, cell_size):
    """Dense SIFT of both images at the working resolution (longest side ``max_side``).

    Returns
    -------
    descriptors0, descriptors1 : ndarray
        float32 (h, w, 128) each; raises ValueError when the images differ in size.
    """
    if image1.shape[:2] != image0.shape[:2]:
        raise ValueError(f"images differ in size: {image0.shape} and {image1.shape}")
    size = working_size(image0.shape, max_side)
    return tuple(dense_sift(resize_image(image, size), cell_size=cell_size)
                 for image in (image0, image1))


def working_size(shape, max_side: int) -> tuple[int, int]:
    """(width, height) of the working resolution: longest side ``max_side``, never upscaled."""
    height, width = shape[:2]
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def siftflow(image0: np.ndarray, image1: np.ndarray, *, max_side: int = 256, levels: int = 4,
             alpha: float = 2 * 255, d: float = 40 * 255, eta: float = 0.005 * 255,
             data_truncation: float | None = None, top_window: int = 10, window: int = 2,
             top_iterations: int = 60, iterations: int = 30, damping: float = 0.5,
             cell_size: float = 3.0) -> np.ndarray:
    """SIFT Flow from image0 to image1.

    Parameters
    ----------
    image0, image1 : ndarray
        uint8 (H, W, 3) RGB, same size.
    max_side : int
        Longest side of the working resolution; the flow is upsampled to (H, W).
    levels : int
        Pyramid levels of the coarse-to-fine search.
    alpha, d, eta, data_truncation :
        Energy weights (TPAMI eq. 3) for descriptors in 0..255; see the module docstring.
    top_window, window : int
        Half size of the search window at the top level and, around the upsampled coarser
        flow, at every finer level (working-resolution pixels of that level).
    top_iterations, iterations, damping :
        Belief propagation schedule.
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
    pyramid0 = sift_pyramid(descriptors0, levels=levels)
    pyramid1 = sift_pyramid(descriptors1, levels=levels)
    flow = None
    for level in range(len(pyramid0) - 1, -1, -1):
        descriptors0, descriptors1 = pyramid0[level], pyramid1[level]
        level_height, level_width = descriptors0.shape[:2]
        if flow is None:
            offsets = np.zeros((level_height, level_width, 2), np.int64)
            half, sweeps = top_window, top_iterations
        else:
            offsets = np.rint(resize_flow(flow, (level_width, level_height))).astype(np.int64)
            half, sweeps = window, iterations
        cost = descriptor_cost(descriptors0, descriptors1, window=half, offsets=offsets,
                               truncation=data_truncation)
        labels = dual_layer_bp(cost, grid_edges(level_height, level_width), alpha=alpha,
                               truncation=d, eta=eta, offsets=offsets.reshape(-1, 2),
                               iterations=sweeps, damping=damping)
        flow = (offsets.reshape(-1, 2) + labels).reshape(level_height, level_width, 2)
        flow = flow.astype(np.float32)
        log.debug("SIFT Flow level %d (%dx%d): median |w| %.1f px", level, level_width,
                  level_height, float(np.median(np.hypot(flow[..., 0], flow[..., 1]))))
    return resize_flow(flow, (width, height))
