"""Lesion evolution between two visits: which lesions stay, grow, shrink, appear or vanish.

The plan drawn here is what a tracker must detect as change (Li, Esteva et al. 2016, section
3.2: lesions that changed between visits); the dataset writer blends each lesion into t0 and
t1 following it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

LESION_STATES = ("same", "grown", "shrunk", "new", "gone")


def draw_lesion_changes(
    num_lesions: int,
    *,
    rng: np.random.Generator,
    malignant: Sequence[bool] | None = None,
    p_new: float = 0.08,
    p_gone: float = 0.04,
    p_grown: float = 0.2,
    p_shrunk: float = 0.08,
    malignant_growth_boost: float = 2.0,
    max_growth: float = 1.35,
    min_shrink: float = 0.75,
    colour_shift_sigma: float = 6.0,
) -> list[dict[str, Any]]:
    """Plan how each lesion changes between t0 and t1.

    The synthesizer blends each lesion separately into t0 and t1 following this plan:
    "same" (present in both, scale 1), "grown" / "shrunk" (present in both, resized by
    ``scale`` in t1), "new" (absent from t0, present in t1), "gone" (present in t0, absent from
    t1). ``colour_shift`` is an additive RGB change applied to the lesion in t1 (negative =
    darker), drawn for every state but mostly darkening for malignant lesions.

    Parameters
    ----------
    num_lesions : int
    rng : numpy.random.Generator
    malignant : sequence of bool, optional
        Per lesion; malignant lesions grow ``malignant_growth_boost`` times more often and
        darken on average.
    p_new, p_gone, p_grown, p_shrunk : float
        Probabilities of each state; the rest is "same".
    max_growth, min_shrink : float
        Scale ranges: grown ~ U(1.08, max_growth), shrunk ~ U(min_shrink, 0.93).
    colour_shift_sigma : float
        Per-channel colour change ~ N(mean, sigma) grey levels.

    Returns
    -------
    list of dict
        One per lesion: {"state": str, "scale": float, "colour_shift": [dr, dg, db]}.
    """
    if malignant is not None and len(malignant) != num_lesions:
        raise ValueError(f"malignant has {len(malignant)} entries for {num_lesions} lesions")
    plans = []
    for index in range(num_lesions):
        is_malignant = bool(malignant[index]) if malignant is not None else False
        grown = min(p_grown * (malignant_growth_boost if is_malignant else 1.0), 0.9)
        probabilities = np.array([p_new, p_gone, grown, p_shrunk])
        probabilities = np.append(probabilities, max(0.0, 1.0 - probabilities.sum()))
        probabilities /= probabilities.sum()
        state = ("new", "gone", "grown", "shrunk", "same")[int(rng.choice(5, p=probabilities))]
        if state == "grown":
            scale = float(rng.uniform(1.08, max_growth))
        elif state == "shrunk":
            scale = float(rng.uniform(min_shrink, 0.93))
        else:
            scale = 1.0
        mean = -6.0 if is_malignant else 0.0
        shift = rng.normal(mean, colour_shift_sigma, 3) + rng.normal(0, colour_shift_sigma / 2)
        plans.append({"state": state, "scale": round(scale, 4), "colour_shift": [round(float(v), 2) for v in shift]})
    return plans
