"""Illumination change between two visits: a smooth gain field and a white-balance shift.

Between follow-up photos the light falls differently (lamp position, flash, ambient colour);
t1 of a synthetic pair gets a low-frequency multiplicative gain, so a tracker must match skin
by its structure rather than its brightness.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def _illumination_gain(size: Sequence[int], params: dict[str, Any]) -> np.ndarray:
    """(H, W, 3) float gain field from illumination params."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    u = (xs - (width - 1) / 2) / max(width, height)
    v = (ys - (height - 1) / 2) / max(width, height)
    angle = math.radians(params["gradient_angle_deg"])
    log_gain = params["gradient"] * (u * math.cos(angle) + v * math.sin(angle)) + params["brightness"]
    for blob in params["blobs"]:
        bx, by, radius, amplitude = blob
        log_gain = log_gain + amplitude * np.exp(-((u - bx) ** 2 + (v - by) ** 2) / (2 * radius**2))
    gain = np.exp(log_gain)[..., None] * np.asarray(params["colour_gains"], np.float64)
    return gain


def apply_illumination(image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Apply an illumination change described by ``params`` (from :func:`change_illumination`).

    Parameters
    ----------
    image : ndarray, uint8, shape (H, W, 3)

    Returns
    -------
    ndarray, uint8, shape (H, W, 3)
    """
    height, width = image.shape[:2]
    gain = _illumination_gain((width, height), params)
    return np.clip(image.astype(np.float64) * gain + 0.5, 0, 255).astype(np.uint8)


def change_illumination(
    image: np.ndarray,
    *,
    rng: np.random.Generator,
    strength: float = 1.0,
    gradient_sigma: float = 0.25,
    brightness_sigma: float = 0.08,
    temperature_sigma: float = 0.05,
    num_blobs: int = 2,
    blob_sigma: float = 0.12,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Smooth illumination and colour-temperature change between visits.

    A low-frequency multiplicative gain field: ``exp(linear gradient + brightness + Gaussian
    blobs)`` times per-channel gains (warm / cool white balance).

    Parameters
    ----------
    image : ndarray, uint8, shape (H, W, 3)
    rng : numpy.random.Generator
    strength : float
        Multiplies every amplitude (0 = no change).
    gradient_sigma : float
        Log-gain change across the image along a random direction ~ N(0, sigma).
    brightness_sigma : float
        Global log-gain ~ N(0, sigma).
    temperature_sigma : float
        Colour temperature: red log-gain +t, blue -t, t ~ N(0, sigma).
    num_blobs, blob_sigma : int, float
        Broad Gaussian highlights/shadows with log amplitude ~ N(0, blob_sigma).

    Returns
    -------
    image : ndarray, uint8, shape (H, W, 3)
    params : dict
        JSON-serialisable; :func:`apply_illumination` reproduces the change.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    temperature = float(rng.normal(0, temperature_sigma)) * strength
    tint = float(rng.normal(0, temperature_sigma / 3)) * strength
    blobs = [
        [float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5)),
         float(rng.uniform(0.15, 0.4)), float(rng.normal(0, blob_sigma)) * strength]
        for _ in range(num_blobs)
    ]
    params = {
        "gradient": float(rng.normal(0, gradient_sigma)) * strength,
        "gradient_angle_deg": float(rng.uniform(0, 360)),
        "brightness": float(rng.normal(0, brightness_sigma)) * strength,
        "colour_gains": [math.exp(temperature), math.exp(tint), math.exp(-temperature)],
        "blobs": blobs,
    }
    return apply_illumination(image, params), params
