"""Procedural lesions: crops with black outside the lesion mask, like PAD-UFES-20.

Benign lesions are round, regular and uniformly brown; malignant ones follow the ABCD rule of
dermoscopy (Asymmetry, Border irregularity, Colour variegation, Diameter > 6 mm).
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from synth.procedural.noise import fine_noise, smooth_noise
from synth.procedural.skin import FITZPATRICK_TONES, FITZPATRICK_WEIGHTS

# Lesion colour palette (RGB), names as in dermoscopy colour criteria.
_LESION_COLOURS = {
    "light-brown": (168, 116, 82),
    "dark-brown": (96, 58, 40),
    "black": (42, 32, 30),
    "red": (176, 84, 80),
    "blue-grey": (96, 100, 118),
    "white": (214, 200, 192),
}


def _lesion_outline(rng: np.random.Generator, radius: float, malignant: bool) -> tuple[np.ndarray, dict[str, float]]:
    """Radius r(theta) at 720 angles: low harmonics for shape/asymmetry, high ones for the
    border (A and B of the ABCD rule)."""
    theta = np.linspace(0, 2 * math.pi, 720, endpoint=False)
    if malignant:
        low = {1: rng.uniform(0.08, 0.22), 2: rng.uniform(0.08, 0.25), 3: rng.uniform(0.04, 0.14), 4: rng.uniform(0.02, 0.08)}
        border = rng.uniform(0.06, 0.13)
        high = range(5, 24)
    else:
        low = {2: rng.uniform(0.0, 0.12), 3: rng.uniform(0.0, 0.02)}
        border = rng.uniform(0.0, 0.015)
        high = range(5, 12)
    shape = np.ones_like(theta)
    for k, amplitude in low.items():
        shape += amplitude * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    weights = np.array([1.0 / k**1.1 for k in high])
    weights /= np.sqrt((weights**2).sum())
    for k, weight in zip(high, weights):
        shape += border * weight * rng.standard_normal() * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    shape = np.maximum(shape, 0.3)
    stats = {"asymmetry": float(sum(low.get(k, 0.0) for k in (1, 3))), "border_irregularity": float(border)}
    return radius * shape / shape.mean(), stats


def procedural_lesion(
    *,
    rng: np.random.Generator,
    malignant: bool,
    diameter_px: float = 96,
    fitzpatrick: int = 2,
    margin: float = 0.08,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Draw one procedural lesion as a crop with black outside its mask.

    Benign: round or slightly oval, smooth border, one brown with soft edges.
    Malignant (ABCD rule): asymmetric shape, irregular border (radial noise), two to four
    colours among light / dark brown, black, red, blue-grey, white.

    Parameters
    ----------
    rng : numpy.random.Generator
    malignant : bool
    diameter_px : float
        Mean diameter of the lesion in the crop, pixels (>= 8).
    fitzpatrick : int in 1..6
        Surrounding skin type; the lesion's rim fades towards this tone and its pigment
        darkens with it.
    margin : float
        Black border around the lesion, as a fraction of the diameter (at least 3 px).

    Returns
    -------
    image : ndarray, uint8, shape (h, w, 3)
        RGB, black (0) outside the mask.
    mask : ndarray, bool, shape (h, w)
        Lesion pixels, never touching the crop border.
    metadata : dict
        JSON-serialisable: malignant, diagnosis, diameter_px, colours, asymmetry,
        border_irregularity, fitzpatrick.
    """
    if diameter_px < 8:
        raise ValueError(f"diameter_px must be >= 8, got {diameter_px}")
    radius = diameter_px / 2.0
    radii, stats = _lesion_outline(rng, radius, malignant)
    theta = np.linspace(0, 2 * math.pi, len(radii), endpoint=False)
    pad = max(3, int(math.ceil(margin * diameter_px)))
    xs = radii * np.cos(theta)
    ys = radii * np.sin(theta)
    x0, y0 = xs.min(), ys.min()
    width = int(math.ceil(xs.max() - x0)) + 2 * pad + 1
    height = int(math.ceil(ys.max() - y0)) + 2 * pad + 1
    polygon = np.stack([xs - x0 + pad, ys - y0 + pad], 1)
    mask8 = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask8, [np.round(polygon * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    mask = mask8.astype(bool)

    shape = (height, width)
    skin_tone = np.asarray(FITZPATRICK_TONES.get(int(fitzpatrick), FITZPATRICK_TONES[2]), np.float32)
    darken = 1.0 - 0.08 * (int(fitzpatrick) - 2)
    # Distance to the border, normalised by the radius: drives rim fading and inner darkening.
    inside = cv2.distanceTransform(mask8, cv2.DIST_L2, 5) / max(radius, 1.0)
    if malignant:
        names = ["dark-brown", "light-brown"] + list(
            rng.choice(["black", "red", "blue-grey", "white"], size=rng.integers(0, 3), replace=False)
        )
        fields = np.stack([smooth_noise(rng, shape, rng.uniform(2.5, 5)) for _ in names], -1)
        fields[..., 0] += 0.8 * np.clip(inside * 2, 0, 1) * (len(names) > 2)  # darker centre
        fields[..., 2:] -= 0.6  # accent colours (black, red, blue-grey, white) in smaller patches
        choice = np.argmax(fields, -1)
        palette = np.array([_LESION_COLOURS[n] for n in names], np.float32)
        colour = palette[choice]
        colour = cv2.GaussianBlur(colour, (0, 0), max(0.8, diameter_px / 60))
        rim = np.clip(inside / rng.uniform(0.04, 0.1), 0, 1)
    else:
        names = [str(rng.choice(["light-brown", "dark-brown"], p=[0.6, 0.4]))]
        base = np.asarray(_LESION_COLOURS[names[0]], np.float32) * np.exp(rng.normal(0, 0.08))
        colour = np.broadcast_to(base, (*shape, 3)).copy()
        colour *= (0.92 + 0.08 * (1 - np.clip(inside * 2, 0, 1)))[..., None]  # slightly darker centre
        rim = np.clip(inside / rng.uniform(0.15, 0.3), 0, 1)
    colour *= darken
    colour *= (1 + 0.04 * fine_noise(rng, shape, 1.0))[..., None]
    # Soft rim: the outermost pixels fade towards the surrounding skin tone.
    rim = rim[..., None] ** 0.8
    lesion = colour * rim + skin_tone * (1 - rim)
    image = np.where(mask[..., None], np.clip(lesion + 0.5, 0, 255), 0).astype(np.uint8)
    metadata = {
        "malignant": bool(malignant),
        "diagnosis": "procedural-malignant" if malignant else "procedural-benign",
        "diameter_px": float(diameter_px),
        "colours": names,
        "fitzpatrick": int(fitzpatrick),
        **stats,
    }
    return image, mask, metadata


def procedural_lesion_records(
    n: int,
    *,
    seed: int = 0,
    malignant_fraction: float = 0.5,
    lesions_per_patient: int = 2,
) -> list[dict[str, Any]]:
    """Catalogue of ``n`` procedural lesions (the procedural counterpart of PAD-UFES-20
    metadata).

    Parameters
    ----------
    n : int
    seed : int
        Catalogue seed; the same seed gives the same records.
    malignant_fraction : float
    lesions_per_patient : int
        Consecutive lesions share a patient id, so splits by patient are meaningful.

    Returns
    -------
    list of dict
        {"id": "proc-lesion-00007", "index": 7, "source": "procedural", "malignant": bool,
        "diagnosis": "procedural-benign" | "procedural-malignant", "patient": "proc-03",
        "diameter_mm": float, "fitzpatrick": int, "seed": int}. Benign 2.5-6 mm,
        malignant 5-14 mm (the D of the ABCD rule).
    """
    rng = np.random.default_rng([int(seed), 1])
    records = []
    patient_type = {}
    for index in range(n):
        patient = index // max(1, lesions_per_patient)
        if patient not in patient_type:
            patient_type[patient] = int(rng.choice(6, p=FITZPATRICK_WEIGHTS)) + 1
        malignant = bool(rng.random() < malignant_fraction)
        diameter = rng.uniform(5.0, 14.0) if malignant else rng.uniform(2.5, 6.0)
        records.append(
            {
                "id": f"proc-lesion-{index:05d}",
                "index": index,
                "source": "procedural",
                "malignant": malignant,
                "diagnosis": "procedural-malignant" if malignant else "procedural-benign",
                "patient": f"proc-{patient:02d}",
                "diameter_mm": round(float(diameter), 2),
                "fitzpatrick": patient_type[patient],
                "seed": int(rng.integers(2**31)),
            }
        )
    return records


def render_procedural_lesion(
    record: dict[str, Any], *, seed: int = 0, px_per_mm: float = 10.0, max_size: int = 256
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Render one lesion record; the same record and seed always give the same arrays.

    Parameters
    ----------
    record : dict
        From :func:`procedural_lesion_records`.
    seed : int
        Extra seed (e.g. the dataset seed) mixed with the record's own.
    px_per_mm : float
        Crop resolution; the diameter is clipped so the crop stays within ``max_size``
        (PAD-UFES-20 crops have their longest side <= 256 px).

    Returns
    -------
    image, mask, metadata
        As :func:`procedural_lesion`; metadata also holds the record's fields.
    """
    rng = np.random.default_rng([int(record["seed"]), int(seed)])
    diameter_px = float(np.clip(record["diameter_mm"] * px_per_mm, 16, 0.7 * max_size))
    image, mask, metadata = procedural_lesion(
        rng=rng, malignant=bool(record["malignant"]), diameter_px=diameter_px,
        fitzpatrick=int(record.get("fitzpatrick", 2)),
    )
    return image, mask, {**record, **metadata}
