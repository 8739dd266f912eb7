"""What decides a dataset's content, and the sources and splits its samples are drawn from.

:class:`DatasetConfig` holds every option that changes the files (``workers`` and ``shard`` do
not); :class:`Context` the checked lesion and body sources with the split of every patient and
body photo (nothing shared across splits); :func:`split_of` the split of a sample index.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from synth.contrast import VISIBLE_DELTA_E
from synth.io import InputError
from synth.sources import BodySource, LesionSource, assign_splits

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that decides a dataset's content (``workers`` and ``shard`` do not)."""

    count: int
    lesions: tuple | str | None = None
    bodies: str | None = None
    pairs: bool = False
    seed: int = 0
    size: tuple = (512, 512)
    mm_per_px: float = 0.4
    lesions_per_image: tuple = (3, 9)
    malignant_fraction: float = 0.5
    split_fractions: tuple = (0.7, 0.15, 0.15)
    pair_strength: float = 1.0
    lesion_weights: tuple | None = None
    hair_fraction: float = 0.3
    min_contrast: float = VISIBLE_DELTA_E
    skin_tone: tuple | None = None

    def __post_init__(self):
        # One folder or several: always a tuple of folders (None: procedural).
        if isinstance(self.lesions, (str, os.PathLike)):
            object.__setattr__(self, "lesions", (str(self.lesions),))
        elif self.lesions is not None:
            object.__setattr__(self, "lesions", tuple(str(f) for f in self.lesions) or None)

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("size", "lesions_per_image", "split_fractions", "lesions", "lesion_weights",
                    "skin_tone"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data


@dataclass
class Context:
    """The sources and split assignment a worker needs to compose samples."""

    config: DatasetConfig
    lesions: LesionSource
    bodies: BodySource
    patient_split: dict = field(default_factory=dict)
    body_split: dict = field(default_factory=dict)

    @classmethod
    def build(cls, config: DatasetConfig, *, check=True) -> "Context":
        lesions = LesionSource(config.lesions, weights=config.lesion_weights, seed=config.seed,
                               check=check)
        # Procedural bodies are drawn at about twice the sample size, like a body photo.
        body_size = (2 * config.size[0], int(1.625 * config.size[1]))
        bodies = BodySource(config.bodies, seed=config.seed, mm_per_px=config.mm_per_px,
                            size=body_size)
        if check:
            bodies.check()
        _check_lesion_sizes(lesions, bodies, config)
        context = cls(config, lesions, bodies)
        context.patient_split = assign_splits([r["patient"] for r in lesions.records],
                                              seed=config.seed, fractions=config.split_fractions)
        context.body_split = assign_splits([r["id"] for r in bodies.records],
                                           seed=config.seed, fractions=config.split_fractions)
        return context

    def draw_lesion(self, pool, rng):
        """One lesion index of ``pool``, drawn with the libraries' weights."""
        weights = np.array([self.lesions.records[i].get("weight", 1.0) for i in pool])
        if np.all(weights == weights[0]):
            return int(rng.choice(pool))
        return int(rng.choice(pool, p=weights / weights.sum()))

    def pools(self, split):
        """Indices of the lesions (benign, malignant) and bodies usable in ``split``."""
        lesions = [i for i, r in enumerate(self.lesions.records)
                   if self.patient_split[r["patient"]] == split]
        benign = [i for i in lesions if not self.lesions.records[i]["malignant"]]
        malignant = [i for i in lesions if self.lesions.records[i]["malignant"]]
        bodies = [i for i, r in enumerate(self.bodies.records) if self.body_split[r["id"]] == split]
        return benign, malignant, bodies


def _check_lesion_sizes(lesions, bodies, config):
    """Drop lesions whose physical size exceeds the body crop at every body's scale."""
    finest = min(r["mm_per_px"] for r in bodies.records)
    limit_mm = min(config.size) * finest
    keep = []
    for index, record in enumerate(lesions.records):
        if record.get("diameter_mm") and record["diameter_mm"] > limit_mm:
            lesions.skipped.append((record["source"], f"lesion of {record['diameter_mm']} mm is "
                                    f"larger than the {limit_mm:.0f} mm body crop"))
        else:
            keep.append(index)
    if not keep:
        raise InputError(f"{lesions.folder}: every lesion is larger than the body crop "
                         f"({limit_mm:.0f} mm at {finest} mm/px)")
    if len(keep) < len(lesions.records):
        lesions._raw = [lesions._raw[i] for i in keep]
        lesions.records = [lesions.records[i] for i in keep]
        lesions._load.cache_clear()


def split_of(index, config):
    """The split of sample ``index``: a seeded draw with the configured fractions."""
    u = np.random.default_rng([config.seed, index, 1]).random()
    cumulative = np.cumsum(config.split_fractions)
    return SPLITS[int(np.searchsorted(cumulative, u * cumulative[-1], side="right").clip(0, 2))]
