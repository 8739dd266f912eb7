"""Image and flow helpers that detection and tracking share (numpy and OpenCV, no files).

* :func:`check_image`: the one input check of every image function (uint8 RGB (H, W, 3));
* :func:`resize_image`: a photo at another size (area average when shrinking, bilinear when
  enlarging);
* :func:`pad_to_stride`: pad the bottom and right to a multiple of a network's stride;
* :func:`resize_flow`: a flow field on another grid, in the pixel-centre convention of
  ``cv2.resize``;
* :func:`sample_flow`: flow vectors at subpixel points (bilinear).

Conventions (README): images uint8 RGB (H, W, 3); flow float32 (H, W, 2), channel 0 = dx
(columns), forward t0 -> t1, in pixels: pixel (x, y) of image0 shows the point seen at
(x + dx, y + dy) in image1. Pixel (x, y) is the square whose centre is at (x, y); a pixel
centre of an image resized by s lands at ``(x + 0.5) * s - 0.5``, as in ``cv2.resize``.
"""
from __future__ import annotations

import cv2
import numpy as np

MIN_SIDE = 8


def check_image(image, name: str = "image", *, min_side: int = MIN_SIDE) -> np.ndarray:
    """Return ``image`` as an array if it is uint8 RGB (H, W, 3), else raise ValueError.

    Parameters
    ----------
    image : array_like
    name : str
        Used in the error message ("image0", ...).
    min_side : int
        Smallest height and width accepted.

    Returns
    -------
    ndarray
        uint8 (H, W, 3), the same data.

    Raises
    ------
    ValueError
        Naming ``name`` and what is wrong (dtype, shape, size).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be RGB of shape (H, W, 3), got {image.shape}")
    if image.shape[0] < min_side or image.shape[1] < min_side:
        raise ValueError(f"{name} is too small ({image.shape[1]}x{image.shape[0]}); "
                         f"need {min_side}x{min_side}")
    return image


def resize_image(image, size) -> np.ndarray:
    """``image`` at ``size`` (W, H): area average when shrinking, bilinear otherwise.

    Parameters
    ----------
    image : ndarray
        (H, W) or (H, W, C), uint8 or float.
    size : (int, int)
        (W', H').

    Returns
    -------
    ndarray
        (H', W'[, C]), same dtype; ``image`` itself when the size is unchanged.
    """
    height, width = image.shape[:2]
    size = (int(size[0]), int(size[1]))
    if size == (width, height):
        return image
    shrinking = size[0] * size[1] < width * height
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def pad_to_stride(array, stride: int, *, mode: str = "reflect", constant=0):
    """Pad the bottom and right of (H, W, ...) to multiples of ``stride``.

    Parameters
    ----------
    array : ndarray
        (H, W) or (H, W, C), any dtype.
    stride : int
    mode : {"reflect", "edge", "constant"}
        As :func:`numpy.pad`; "reflect" falls back to "edge" when the padding is not smaller
        than the side (reflection needs that).
    constant : scalar
        Fill value of ``mode="constant"``.

    Returns
    -------
    padded : ndarray
        (H', W', ...) with H', W' the next multiples of ``stride``, same dtype.
    size : (int, int)
        The original (H, W), to crop results back with ``[:H, :W]``.
    """
    array = np.asarray(array)
    height, width = array.shape[:2]
    pad_y, pad_x = -height % stride, -width % stride
    pad = [(0, pad_y), (0, pad_x)] + [(0, 0)] * (array.ndim - 2)
    if mode == "constant":
        return np.pad(array, pad, mode="constant", constant_values=constant), (height, width)
    if mode == "reflect" and (pad_y >= height or pad_x >= width):
        mode = "edge"
    return np.pad(array, pad, mode=mode), (height, width)


def resize_flow(flow, size, *, target_size=None) -> np.ndarray:
    """A flow field resampled onto another grid, pixel-centre convention of ``cv2.resize``.

    ``flow`` maps pixels of an image of (W, H) = ``flow.shape[1::-1]`` into an image of the
    same size. The result maps the pixels of that first image resized to ``size`` into the
    second image resized to ``target_size`` (default ``size``): for a source pixel x' of the
    new grid, ``x = (x' + 0.5) * W / W' - 0.5`` on the old grid, its target
    ``q = x + flow(x)``, and ``q' = (q + 0.5) * W1 / W - 0.5`` on the target grid. When both
    images are resized alike the values are only scaled (a constant flow (3, -2) resized 2x
    is (6, -4) everywhere).

    Parameters
    ----------
    flow : ndarray
        float (H, W, 2), channel 0 = dx.
    size : (int, int)
        (W', H') of the new source grid.
    target_size : (int, int), optional
        (W1, H1) of the image the result points into; default ``size``.

    Returns
    -------
    ndarray
        float32 (H', W', 2).
    """
    flow = np.asarray(flow, np.float32)
    height, width = flow.shape[:2]
    new_width, new_height = int(size[0]), int(size[1])
    target_width, target_height = (new_width, new_height) if target_size is None else \
        (int(target_size[0]), int(target_size[1]))
    if (new_width, new_height) != (width, height):
        flow = cv2.resize(flow, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    out = flow * np.array([target_width / width, target_height / height], np.float32)
    if (target_width, target_height) != (new_width, new_height):
        # Source and target grids scale differently: the target moves with the pixel centre.
        columns = np.arange(new_width, dtype=np.float32) + 0.5
        rows = np.arange(new_height, dtype=np.float32) + 0.5
        out[..., 0] += columns[None, :] * (target_width / new_width - 1)
        out[..., 1] += rows[:, None] * (target_height / new_height - 1)
    return np.ascontiguousarray(out, np.float32)


def sample_flow(flow, points) -> np.ndarray:
    """Flow vectors at subpixel points, by bilinear interpolation (clamped at the borders).

    Parameters
    ----------
    flow : array_like
        float (H, W, 2).
    points : array_like
        float (N, 2), [x, y] pixels.

    Returns
    -------
    ndarray
        float64 (N, 2), [dx, dy].
    """
    flow = np.asarray(flow, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if points.shape[0] == 0:
        return np.zeros((0, 2))
    height, width = flow.shape[:2]
    x = np.clip(points[:, 0], 0, width - 1)
    y = np.clip(points[:, 1], 0, height - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), max(width - 2, 0))
    y0 = np.minimum(np.floor(y).astype(np.int64), max(height - 2, 0))
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((1 - fy) * ((1 - fx) * flow[y0, x0] + fx * flow[y0, x1])
            + fy * ((1 - fx) * flow[y1, x0] + fx * flow[y1, x1]))
