"""Uniform access to lesion and body sources: real folders or the built-in procedural ones.

The synthesizer sees a lesion source as a list of metadata dicts plus ``load(i)`` returning
``(image, mask)``, and a body source as a list of metadata dicts plus ``load(i)`` returning
``dict(image, skin, ignore, known, known_lesions)`` (see :func:`synth.bodies.load_body`).
Loaded arrays are cached per process.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from synth import procedural
from synth.bodies import load_body, read_body_library
from synth.io import InputError
from synth.lesions import check_lesions, load_lesion, read_lesion_library, trim_background

log = logging.getLogger(__name__)

# Size of the procedural body photos (W, H), about that of an iToBoS tile.
PROCEDURAL_BODY_SIZE = (1024, 832)
PROCEDURAL_LESIONS = 240
PROCEDURAL_BODIES = 12


class _Cached:
    """Pickles without its per-process cache (worker processes build their own)."""

    _cache_size = 256

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_load", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._load = functools.lru_cache(maxsize=self._cache_size)(self._load_uncached)


class LesionSource(_Cached):
    """Lesions with metadata from one or more libraries; ``load(i) -> (image, mask bool)``.

    Parameters
    ----------
    folders : None, path-like or sequence of path-like
        Lesion library folders (any layout of :func:`synth.lesions.read_lesion_library`);
        None for the built-in procedural lesions.
    weights : sequence of float, optional
        One per folder: how often each lesion of that library is drawn relative to a lesion
        of weight 1 (default 1 for every library, so every lesion is equally likely).
    seed : int
    check : bool
        Decode every lesion once and drop unreadable ones.

    Each record carries ``library`` (the folder's name) and ``weight``; with several
    libraries the patient key is ``<library>/<patient>``, so splits by patient never mix
    two libraries' ids.
    """

    def __init__(self, folders=None, *, weights=None, seed=0, check=True):
        if isinstance(folders, (str, Path)):
            folders = [folders]
        folders = [] if folders is None else [str(Path(f).resolve()) for f in folders]
        weights = [1.0] * len(folders) if weights is None else [float(w) for w in weights]
        if len(weights) != len(folders):
            raise InputError(f"{len(weights)} lesion weights for {len(folders)} lesion libraries")
        if any(not np.isfinite(w) or w <= 0 for w in weights):
            raise InputError("lesion library weights must be positive numbers")
        self.folder = folders[0] if folders else None
        self.skipped = []
        self.libraries = []
        if not folders:
            self.layout = "procedural"
            self.records = procedural.procedural_lesion_records(PROCEDURAL_LESIONS, seed=seed)
            self._raw = self.records
        else:
            self._raw, self.records = [], []
            names = []
            for folder, weight in zip(folders, weights):
                library = read_lesion_library(folder)
                raw, skipped = check_lesions(library) if check else (library.records, [])
                self.skipped += list(library.skipped) + list(skipped)
                if not raw:
                    raise InputError(f"{folder}: no usable lesion photo")
                name = Path(folder).name
                while name in names:
                    name += "+"
                names.append(name)
                self.libraries.append({"folder": folder, "name": name, "layout": library.layout,
                                       "weight": weight, "num_lesions": len(raw)})
                for record in raw:
                    meta = _lesion_metadata(record)
                    meta["library"], meta["weight"] = name, weight
                    if len(folders) > 1:
                        meta["patient"] = f"{name}/{meta['patient']}"
                    self._raw.append(record)
                    self.records.append(meta)
            self.layout = "+".join(library["layout"] for library in self.libraries)
        self._cache_size = 4096
        self._load = functools.lru_cache(maxsize=self._cache_size)(self._load_uncached)

    def __len__(self):
        return len(self.records)

    def load(self, index):
        """The lesion's image and mask (cached)."""
        return self._load(index)

    def _load_uncached(self, index):
        raw = self._raw[index]
        if self.layout == "procedural":
            image, mask, _ = procedural.render_procedural_lesion(raw)
            return image, mask
        image, mask, _ = load_lesion(raw)
        mask = trim_background(image, mask)
        return image, mask


def _lesion_metadata(record) -> dict:
    """JSON-ready metadata of a LesionRecord."""
    data = asdict(record)
    return {
        "id": data["id"],
        "source": data["image_path"],
        "mask_source": "file" if data["mask_path"] else "auto",
        "patient": data["patient"] or data["id"],
        "diagnosis": data["diagnosis"],
        "malignant": bool(data["malignant"]),
        "fitzpatrick": data["fitzpatrick"],
        "diameter_mm": data["diameter_mm"],
    }


class BodySource(_Cached):
    """Body photos with metadata; ``load(i) -> dict(image, skin, ignore, known, known_lesions)``."""

    def __init__(self, folder=None, *, seed=0, mm_per_px=0.4, size=PROCEDURAL_BODY_SIZE):
        self.folder = None if folder is None else str(Path(folder).resolve())
        self.size = tuple(size)
        self.skipped = []
        if folder is None:
            self.layout = "procedural"
            self._raw = procedural.procedural_body_records(PROCEDURAL_BODIES, seed=seed,
                                                           mm_per_px=mm_per_px)
            self.records = [{"id": r["id"], "source": "procedural", "mm_per_px": r["mm_per_px"],
                             "fitzpatrick": r["fitzpatrick"]} for r in self._raw]
        else:
            library = read_body_library(folder, mm_per_px=mm_per_px)
            self.layout = "folder"
            self.skipped = list(library.skipped)
            self._raw = list(library.records)
            if not self._raw:
                raise InputError(f"{folder}: no usable body photo")
            self.records = [{"id": r.name, "source": str(r.image_path), "mm_per_px": r.mm_per_px,
                             "skin_mask": "file" if r.skin_mask_path else "auto",
                             "boxes": len(r.boxes)} for r in self._raw]
        self._checked = {}
        self._load = functools.lru_cache(maxsize=self._cache_size)(self._load_uncached)

    def __len__(self):
        return len(self.records)

    def load(self, index):
        """The body photo, its skin, existing-lesion (ignore) and real-lesion masks (cached)."""
        return self._load(index)

    def check(self):
        """Load every body once; drop (and list in ``skipped``) those that fail.

        The arrays loaded here stay cached (up to the cache size), so the worker processes
        forked afterwards share them instead of decoding and segmenting every photo again.
        """
        if self.layout == "procedural":
            return
        keep, loaded = [], {}
        for index in range(len(self._raw)):
            try:
                body = self._load_uncached(index)
            except InputError as error:
                self.skipped.append((self.records[index]["source"], str(error)))
                continue
            if len(loaded) < self._cache_size:
                loaded[len(keep)] = body
            keep.append(index)
        if not keep:
            raise InputError(f"{self.folder}: no usable body photo ("
                             + "; ".join(reason for _, reason in self.skipped[:3]) + ")")
        self._raw = [self._raw[i] for i in keep]
        self.records = [self.records[i] for i in keep]
        self._load.cache_clear()
        self._checked = loaded
        for index in list(loaded):
            self._load(index)  # moves the checked body from ``_checked`` into the cache

    def _load_uncached(self, index):
        if index in self._checked:
            return self._checked.pop(index)
        raw = self._raw[index]
        if self.layout == "procedural":
            image, skin, ignore = procedural.render_procedural_body(raw, self.size)
            return {"image": image, "skin": skin, "ignore": ignore,
                    "known": np.zeros(skin.shape, np.uint16), "known_lesions": []}
        body = load_body(raw)
        return {key: body[key] for key in ("image", "skin", "ignore", "known", "known_lesions")}


def assign_splits(keys, *, seed, fractions=(0.7, 0.15, 0.15)) -> dict:
    """Assign each key (patient or body photo) to 'train', 'val' or 'test'.

    Deterministic for a seed. With at least three keys every split gets at least one.

    Returns
    -------
    dict
        key -> split name.
    """
    keys = sorted(set(keys))
    order = np.random.default_rng([int(seed), 77]).permutation(len(keys))
    count = len(keys)
    num_val = int(round(fractions[1] * count))
    num_test = int(round(fractions[2] * count))
    if count >= 3:
        num_val, num_test = max(num_val, 1), max(num_test, 1)
    num_train = max(count - num_val - num_test, 0)
    names = ["train"] * num_train + ["val"] * num_val + ["test"] * num_test
    names += ["train"] * (count - len(names))
    return {keys[i]: names[rank] for rank, i in enumerate(order)}
