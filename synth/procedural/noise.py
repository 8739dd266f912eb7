"""Noise fields the procedural skin and lesions are made of."""
from __future__ import annotations

import math

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float, channels: int = 1) -> np.ndarray:
    """Smooth noise, float32 (H, W) or (H, W, C), zero mean and unit std, with about ``cells``
    blobs across the longest side (value noise: random lattice upsampled with a bicubic kernel)."""
    height, width = shape
    scale = max(height, width) / max(cells, 1.0)
    rows, cols = int(math.ceil(height / scale)) + 3, int(math.ceil(width / scale)) + 3
    lattice = rng.standard_normal((rows, cols, channels)).astype(np.float32)
    big = cv2.resize(lattice, (int(cols * scale), int(rows * scale)), interpolation=cv2.INTER_CUBIC)
    big = big.reshape(big.shape[0], big.shape[1], channels)
    offset = int(scale)
    out = big[offset : offset + height, offset : offset + width]
    out = (out - out.mean()) / (out.std() + 1e-6)
    return out if channels > 1 else out[..., 0]


def fine_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """White noise, float32 (H, W), blurred by ``sigma`` px, scaled to unit std."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if sigma > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / (noise.std() + 1e-6)
