"""Compose samples and write a dataset (Li, Esteva et al. 2016, section 2 "Data Synthesis").

One sample: a crop of a body photo, augmented and shifted in skin tone, with lesions from the
lesion library placed by feature matching, scaled to their physical size and Poisson-blended;
its label map, instance map and per-lesion records. With pairs, a second photo t1 of the same
skin is made by a non-rigid + viewpoint warp with lesions that changed between the visits,
with the exact forward flow t0 -> t1.

Realism (README.rst, "On-disk formats"): the body photo's own annotated moles are labelled 3,
lesion of unknown diagnosis; every blended lesion's contrast (Delta E00 against a ring of skin,
:mod:`synth.contrast`) is measured, a blend below :data:`synth.contrast.VISIBLE_DELTA_E` is
re-blended in the lesion's own colours and, if still too faint, labelled 255; lesion masks lose
their thin appendages and strand-like masks are rejected; a fraction of samples gets hair
strands drawn over skin and lesions.

Every sample is drawn from ``np.random.default_rng([seed, index])``, so the same seed gives the
same files whatever the number of workers, shards or interruptions.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import threadpoolctl

from synth import io
from synth.augment import (apply_hair, augment_body, augment_lesion, fitzpatrick_from_ita,
                           hair_layer, hairiness, individual_typology_angle, photometric,
                           shift_skin_tone)
from synth.blend import blend_lesion
from synth.contrast import VISIBLE_DELTA_E, lesion_contrast
from synth.pairs import (change_illumination, draw_lesion_changes, random_pair_transform,
                         warp_image)
from synth.io import BENIGN, IGNORE, LABEL_NAMES, MALIGNANT, UNKNOWN, InputError
from synth.lesions import draw_diameter_mm, is_thin_strand, remove_strands
from synth.placement import choose_sites, lesion_descriptor
from synth.progress import progress_bar
from synth.sources import BodySource, LesionSource, assign_splits

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------- one sample


def _split_of(index, config):
    """The split of sample ``index``: a seeded draw with the configured fractions."""
    u = np.random.default_rng([config.seed, index, 1]).random()
    cumulative = np.cumsum(config.split_fractions)
    return SPLITS[int(np.searchsorted(cumulative, u * cumulative[-1], side="right").clip(0, 2))]


def _body_crop(body, size, mm_per_px, rng):
    """A crop of the body photo rescaled to ``size``, centred on skin."""
    image, skin, ignore, known = body["image"], body["skin"], body["ignore"], body["known"]
    height, width = skin.shape
    out_w, out_h = size
    # Zoom (output px per body px): log-uniform 0.8-1.25, but the crop must fit in the photo.
    zoom = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    zoom = max(zoom, out_w / width, out_h / height)
    crop_w, crop_h = min(width, int(round(out_w / zoom))), min(height, int(round(out_h / zoom)))
    ys, xs = np.nonzero(skin[::8, ::8])
    best = None
    for _ in range(8):
        k = rng.integers(len(xs))
        x0 = int(np.clip(xs[k] * 8 - crop_w // 2, 0, width - crop_w))
        y0 = int(np.clip(ys[k] * 8 - crop_h // 2, 0, height - crop_h))
        fraction = skin[y0:y0 + crop_h, x0:x0 + crop_w].mean()
        if best is None or fraction > best[0]:
            best = (fraction, x0, y0)
        if fraction > 0.6:
            break
    _, x0, y0 = best
    window = (slice(y0, y0 + crop_h), slice(x0, x0 + crop_w))
    out = cv2.resize(image[window], (out_w, out_h), interpolation=cv2.INTER_AREA)
    nearest = dict(dsize=(out_w, out_h), interpolation=cv2.INTER_NEAREST)
    out_skin = cv2.resize(skin[window].astype(np.uint8), **nearest) > 0
    out_ignore = cv2.resize(ignore[window].astype(np.uint8), **nearest) > 0
    out_known = cv2.resize(np.ascontiguousarray(known[window]), **nearest)
    scale = out_w / crop_w
    params = {"crop": [x0, y0, crop_w, crop_h], "zoom": scale,
              "mm_per_px": mm_per_px / scale}
    return out, out_skin, out_ignore, out_known, params


def _prepare_lesion(image, mask, diameter_px, rng):
    """Crop a lesion to its mask, scale its longest side to ``diameter_px``, augment it."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    image, mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    factor = diameter_px / max(image.shape[:2])
    new_size = (max(3, int(round(image.shape[1] * factor))), max(3, int(round(image.shape[0] * factor))))
    image = cv2.resize(image, new_size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    mask = cv2.resize(mask.astype(np.uint8), new_size, interpolation=cv2.INTER_NEAREST) > 0
    image[~mask] = 0
    image, mask, params = augment_lesion(image, mask, rng=rng, scale_range=(0.9, 1.1))
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("lesion vanished in augmentation")
    # Thin appendages of the mask (hair-like strands at this size) are cut off; what they
    # covered is not lesion, so it is blacked out like the rest of the crop's outside.
    cleaned = remove_strands(mask)
    params["strand_px_removed"] = int(mask.sum() - cleaned.sum())
    mask = cleaned
    if not mask.any():
        raise ValueError("lesion vanished in augmentation")
    image[~mask] = 0
    ys, xs = np.nonzero(mask)
    image, mask = image[ys.min():ys.max() + 1, xs.min():xs.max() + 1], mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask), params


def _change_lesion(image, mask, plan):
    """The lesion as seen at t1: resized by the plan's scale, colour shifted."""
    if plan["scale"] != 1.0:
        size = (max(3, int(round(image.shape[1] * plan["scale"]))),
                max(3, int(round(image.shape[0] * plan["scale"]))))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    shifted = np.clip(image.astype(np.float32) + np.asarray(plan["colour_shift"], np.float32), 0, 255)
    image = np.where(mask[..., None], shifted, image).astype(np.uint8)
    return image, mask


#: Blend settings tried in turn until a lesion is visible: the default (colours carried part way
#: to the new skin tone, synth.blend.prepare_lesion_source), then less and finally no colour
#: transfer (the lesion's own colours: its contrast against its own skin is preserved).
BLEND_ATTEMPTS = ({"tone_match": 0.6}, {"tone_match": 0.3}, {"tone_match": 0.0})
#: An attempt is accepted at this multiple of the contrast threshold.
CONTRAST_MARGIN = 1.25
#: Range of the optical blur (Gaussian sigma, px of the sample) given to each lesion photo, so
#: it is no sharper than the body photo it is blended on.
BLUR_SIGMA_PX = (0.8, 1.8)


def _blend_all(canvas, lesions, which, *, skin, occupied, min_contrast):
    """Blend the chosen lesions into ``canvas``; return the image, labels and instances.

    At t0 (and for lesions new at t1) each lesion is blended with the settings of
    :data:`BLEND_ATTEMPTS` in turn until its contrast reaches :data:`CONTRAST_MARGIN` times
    ``min_contrast``; the most visible
    attempt is kept, and a lesion still below it is labelled 255 (ignore).  At t1 a lesion
    keeps its t0 settings and label.  ``occupied`` bool (H, W): other lesions (real ones),
    never part of a lesion's ring of skin.
    """
    labels = np.zeros(canvas.shape[:2], np.uint8)
    instances = np.zeros(canvas.shape[:2], np.uint16)
    occupied = occupied.copy()
    not_skin = ~skin
    for lesion in lesions:
        image, mask = lesion[which]
        if image is None:
            continue
        decided = lesion.get("blend")
        attempts = [decided["attempt"]] if decided else range(len(BLEND_ATTEMPTS))
        best = None
        for attempt in attempts:
            blended, region, _ = blend_lesion(canvas, image, mask, lesion["center"],
                                              blur_sigma=lesion["augment"]["blur_sigma"],
                                              **BLEND_ATTEMPTS[attempt])
            contrast = lesion_contrast(blended, region, exclude=occupied | not_skin)
            contrast = 0.0 if not np.isfinite(contrast) else contrast
            if best is None or contrast > best[0]:
                best = (contrast, attempt, blended, region)
            # A margin over the threshold: camera blur and noise, added later, lower it.
            if contrast >= CONTRAST_MARGIN * min_contrast:
                break
        contrast, attempt, canvas, region = best
        if not decided:
            decided = {"attempt": attempt, "contrast": round(float(contrast), 2),
                       "visible": bool(contrast >= min_contrast)}
            lesion["blend"] = decided
        label = MALIGNANT if lesion["meta"]["malignant"] else BENIGN
        labels[region] = label if decided["visible"] else IGNORE
        instances[region] = lesion["instance"]
        occupied |= region
    return canvas, labels, instances


def _instance_records(instances, lesions):
    """bbox, centroid, area and polygon of every lesion present in an instance map."""
    out = {}
    for lesion in lesions:
        region = instances == lesion["instance"]
        if not region.any():
            continue
        ys, xs = np.nonzero(region)
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        polygons = [c.reshape(-1).tolist() for c in contours if len(c) >= 3]
        out[lesion["instance"]] = {
            "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                     int(ys.max() - ys.min() + 1)],
            "centroid": [float(xs.mean()), float(ys.mean())],
            "area_px": int(region.sum()),
            "segmentation": polygons,
        }
    return out


def make_sample(index: int, context: Context) -> tuple[dict, dict]:
    """Compose sample ``index``.

    Returns
    -------
    arrays : dict
        ``image`` uint8 (H, W, 3), ``labels`` uint8 (H, W), ``instances`` uint16 (H, W); with
        pairs also ``image1``, ``labels1``, ``instances1``, ``flow`` float32 (H, W, 2) and
        ``valid`` bool (H, W).
    record : dict
        The manifest record without file paths.
    """
    config = context.config
    rng = np.random.default_rng([config.seed, index])
    split = _split_of(index, config)
    benign, malignant, bodies = context.pools(split)
    if not bodies or not (benign or malignant):
        split = "train"
        benign, malignant, bodies = context.pools(split)

    # Body: crop, flips / rotation / scale, then existing lesions become "ignore" and the
    # annotated real ones "unknown" (3).
    body_index = int(rng.choice(bodies))
    body_meta = context.bodies.records[body_index]
    body = context.bodies.load(body_index)
    # Crop a margin larger than the sample so the rotation of augment_body brings no empty
    # corners into the frame, then cut the sample from the centre.
    width, height = config.size
    margin = int(0.12 * max(width, height))
    canvas, skin, ignore, known, crop = _body_crop(body, (width + 2 * margin, height + 2 * margin),
                                                   body_meta["mm_per_px"], rng)
    canvas, masks, body_aug = augment_body(canvas, {"skin": skin, "ignore": ignore, "known": known},
                                           rng=rng, scale_range=(1.0, 1.0))
    window = (slice(margin, margin + height), slice(margin, margin + width))
    canvas = np.ascontiguousarray(canvas[window])
    skin, ignore = masks["skin"][window].astype(bool), masks["ignore"][window].astype(bool)
    known = np.ascontiguousarray(masks["known"][window])
    # Clothing, labels, walls and padding are background: no lesion is placed off skin (a
    # crop with hardly any skin simply gets few or no lesions).
    mm_per_px = crop["mm_per_px"]
    hair_score = round(hairiness(canvas, skin), 4)

    # Lesions: balanced benign / malignant, physical size from mm.
    num = int(rng.integers(config.lesions_per_image[0], config.lesions_per_image[1] + 1))
    lesions, rejected = [], []
    for _ in range(num):
        pick_malignant = malignant and (not benign or rng.random() < config.malignant_fraction)
        pool = malignant if pick_malignant else benign
        lesion_index = context.draw_lesion(pool, rng)
        meta = context.lesions.records[lesion_index]
        image, mask = context.lesions.load(lesion_index)
        diameter_mm = draw_diameter_mm(meta.get("diameter_mm"), meta.get("diagnosis"), rng=rng)
        diameter_px = float(np.clip(diameter_mm / mm_per_px, 6.0, min(config.size) / 5))
        image, mask, aug = _prepare_lesion(image, mask, diameter_px, rng)
        # The body photo's optical blur, given to the (close-up, much sharper) lesion photo.
        aug["blur_sigma"] = round(float(rng.uniform(*BLUR_SIGMA_PX)), 3)
        if is_thin_strand(mask):
            rejected.append({"lesion_id": meta["id"], "library": meta.get("library"),
                             "reason": "thin strand mask"})
            log.info("sample %d: lesion %s rejected: thin strand mask", index, meta["id"])
            continue
        lesions.append({"meta": meta, "t0": (image, mask), "diameter_mm": diameter_mm,
                        "diameter_px": diameter_px, "augment": aug})

    plans = None
    if config.pairs:
        plans = draw_lesion_changes(len(lesions), rng=rng,
                                    malignant=[l["meta"]["malignant"] for l in lesions])
    growth = [max(1.0, p["scale"]) for p in plans] if plans else [1.0] * len(lesions)

    # Placement by matching each lesion's surrounding-skin descriptor with body sites.
    placed = []
    centers = np.zeros((0, 2), np.int64)
    if lesions:
        descriptors = np.stack([lesion_descriptor(l["t0"][0], l["t0"][1],
                                                  fitzpatrick=l["meta"].get("fitzpatrick"))
                                for l in lesions])
        radii = np.array([0.5 * max(l["t0"][1].shape) * g + 3 for l, g in zip(lesions, growth)])
        centers = choose_sites(canvas, skin, descriptors, radii, rng=rng,
                               occupied=ignore | (known > 0))
    for lesion, center in zip(lesions, centers):
        if center[0] < 0:
            continue
        lesion["center"] = (int(center[0]), int(center[1]))
        lesion["instance"] = len(placed) + 1
        placed.append(lesion)
    if plans:
        plans = [p for p, c in zip(plans, centers) if c[0] >= 0]
        for lesion, plan in zip(placed, plans):
            lesion["plan"] = plan
            lesion["t1"] = _change_lesion(*lesion["t0"], plan) if plan["state"] != "gone" else (None, None)
            if plan["state"] == "new":
                lesion["t0"] = (None, None)
    # Real lesions of the body photo: instance ids after the blended ones.
    real = _real_lesions(known, body, first_instance=len(placed) + 1)

    # Skin tone over the Fitzpatrick range (or the types asked for), on the body before
    # blending so lesions keep their own colour (they are blended by gradients, so they take
    # the new tone's level).
    tone = {"applied": False}
    if config.skin_tone:
        probabilities = [1.0 if t in config.skin_tone else 0.0 for t in range(1, 7)]
        canvas, tone = shift_skin_tone(canvas, skin, rng=rng, type_probabilities=probabilities)
        tone["applied"] = True
    elif rng.random() < 0.6:
        canvas, tone = shift_skin_tone(canvas, skin, rng=rng)
        tone["applied"] = True
    fitzpatrick = tone["to_type"] if tone["applied"] else (
        fitzpatrick_from_ita(individual_typology_angle(canvas, skin)) if skin.any() else None)
    base = canvas
    real_mask = np.zeros(known.shape, bool)
    real_instances = np.zeros(known.shape, np.uint16)
    for lesion in real:
        region = known == lesion["known_id"]
        real_mask |= region
        real_instances[region] = lesion["instance"]
    image0, labels0, instances0 = _blend_all(base.copy(), placed, "t0", skin=skin,
                                             occupied=real_mask, min_contrast=config.min_contrast)
    labels0[ignore & skin & (labels0 == 0)] = IGNORE
    labels0[real_mask] = UNKNOWN
    instances0[real_mask] = real_instances[real_mask]
    # Hair over skin and lesions alike, labels unchanged; the same strands at t1 (drawn
    # before the pair warp, so they move with the skin).
    hair = None
    if rng.random() < config.hair_fraction:
        alpha, colour, hair_params = hair_layer(base.shape, rng=rng)
        hair = (alpha, colour)
        image0 = apply_hair(image0, alpha, colour)
    image0_final, photo0 = photometric(image0, rng=rng)
    arrays = {"image": image0_final, "labels": labels0, "instances": instances0}
    shapes0 = _instance_records(instances0, placed + real)

    # Contrast of each lesion in the final image: a blend that the camera noise and blur made
    # invisible is labelled 255 too.
    not_skin = ~skin
    lesion_mask = instances0 > 0
    for lesion in placed:
        if lesion["t0"][0] is None:
            continue
        region = instances0 == lesion["instance"]
        contrast = lesion_contrast(image0_final, region, exclude=lesion_mask | not_skin)
        lesion["contrast"] = None if not np.isfinite(contrast) else round(float(contrast), 2)
        if lesion["blend"]["visible"] and (lesion["contrast"] or 0.0) < config.min_contrast:
            lesion["blend"]["visible"] = False
            lesion["blend"]["faded"] = True
            labels0[region & (labels0 != UNKNOWN)] = IGNORE
    for lesion in real:
        contrast = lesion_contrast(image0_final, instances0 == lesion["instance"],
                                   exclude=lesion_mask | not_skin)
        lesion["contrast"] = None if not np.isfinite(contrast) else round(float(contrast), 2)

    record = {
        "index": index,
        "split": split,
        "size": list(config.size),
        "body": {**{k: body_meta[k] for k in ("id", "source", "mm_per_px")}, **crop,
                 "augment": body_aug},
        "skin_tone": tone,
        "fitzpatrick": fitzpatrick,
        "hairiness": hair_score,
        "hair": hair_params if hair is not None else None,
        "photometric": photo0,
        "lesions": [],
        "real_lesions": [],
        "rejected_lesions": rejected,
    }
    for lesion in placed:
        meta = lesion["meta"]
        blend = lesion.get("blend", {})
        visible = blend.get("visible", True)
        entry = {"instance": lesion["instance"], "source": meta["source"], "lesion_id": meta["id"],
                 "library": meta.get("library", "procedural"),
                 "patient": meta["patient"], "diagnosis": meta["diagnosis"],
                 "malignant": meta["malignant"],
                 "label": (MALIGNANT if meta["malignant"] else BENIGN) if visible else IGNORE,
                 "mask_source": meta.get("mask_source", "procedural"),
                 "diameter_mm": round(lesion["diameter_mm"], 2),
                 "diameter_px": round(lesion["diameter_px"], 2), "center": list(lesion["center"]),
                 "augment": lesion["augment"],
                 "contrast": lesion.get("contrast"), "contrast_blend": blend.get("contrast"),
                 "blend_attempt": blend.get("attempt"), "visible": visible}
        entry.update(shapes0.get(lesion["instance"], {"bbox": None, "centroid": None,
                                                      "area_px": 0, "segmentation": []}))
        record["lesions"].append(entry)
    for lesion in real:
        entry = {"instance": lesion["instance"], "label": UNKNOWN, "diagnosis": "unknown",
                 "source": body_meta["source"], "box_source": lesion["source"],
                 "mask_source": lesion["mask_source"], "contrast": lesion["contrast"]}
        entry.update(shapes0.get(lesion["instance"], {"bbox": None, "centroid": None,
                                                      "area_px": 0, "segmentation": []}))
        record["real_lesions"].append(entry)

    if config.pairs:
        arrays, record = _make_pair(arrays, record, base, placed, real, real_mask, real_instances,
                                    ignore, skin, hair, rng, config)
    return arrays, record


def _real_lesions(known, body, *, first_instance):
    """The body photo's annotated real lesions present in the sample window."""
    ids = [int(i) for i in np.unique(known) if i > 0]
    out = []
    for offset, known_id in enumerate(ids):
        info = body["known_lesions"][known_id - 1]
        out.append({"known_id": known_id, "instance": first_instance + offset,
                    "source": info["source"], "mask_source": info["mask_source"]})
    return out


def _make_pair(arrays, record, base, placed, real, real_mask, real_instances, ignore, skin, hair,
               rng, config):
    """Add t1: lesions as at the second visit, warped, re-lit; exact forward flow."""
    image1, labels1, instances1 = _blend_all(base.copy(), placed, "t1", skin=skin,
                                             occupied=real_mask, min_contrast=config.min_contrast)
    labels1[ignore & skin & (labels1 == 0)] = IGNORE
    labels1[real_mask] = UNKNOWN
    instances1[real_mask] = real_instances[real_mask]
    if hair is not None:
        image1 = apply_hair(image1, *hair)
    transform = random_pair_transform(config.size, rng=rng, strength=config.pair_strength)
    coverage = transform.coverage()
    image1 = warp_image(image1, transform)
    labels1 = warp_image(labels1, transform, interpolation="nearest")
    labels1[~coverage] = IGNORE
    instances1 = warp_image(instances1, transform, interpolation="nearest")
    instances1[~coverage] = 0
    image1, light = change_illumination(image1, rng=rng)
    image1, photo1 = photometric(image1, rng=rng)
    shapes1 = _instance_records(instances1, placed + real)
    for entry, lesion in zip(record["lesions"], placed):
        plan = lesion["plan"]
        entry["change"] = {"state": plan["state"], "scale": round(plan["scale"], 3),
                           "colour_shift": [round(c, 2) for c in plan["colour_shift"]]}
        entry["t1"] = shapes1.get(lesion["instance"])
        if plan["state"] == "new":
            # Decided at t1 (it has no t0 blend).
            blend = lesion.get("blend", {})
            entry.update(visible=blend.get("visible", True), contrast_blend=blend.get("contrast"),
                         blend_attempt=blend.get("attempt"))
            if not entry["visible"]:
                entry["label"] = IGNORE
    for entry, lesion in zip(record["real_lesions"], real):
        entry["t1"] = shapes1.get(lesion["instance"])
    arrays.update(image1=image1, labels1=labels1, instances1=instances1,
                  flow=transform.flow(), valid=transform.valid())
    record["pair_params"] = {"transform": transform.to_dict(), "illumination": light,
                             "photometric": photo1,
                             "motion": transform.displacement_stats()}
    return arrays, record


# --------------------------------------------------------------------------- writing


def write_sample(root: Path, sample_id: str, arrays: dict, record: dict) -> dict:
    """Write one sample's files (each atomically) and return its full manifest record."""
    paths = io.sample_paths(sample_id, pair="flow" in arrays)
    io.write_image(root / paths["image"], arrays["image"])
    io.write_image(root / paths["labels"], arrays["labels"])
    io.write_image(root / paths["instances"], arrays["instances"])
    if "flow" in arrays:
        pair = paths["pair"]
        io.write_image(root / pair["image"], arrays["image1"])
        io.write_image(root / pair["labels"], arrays["labels1"])
        io.write_image(root / pair["instances"], arrays["instances1"])
        io.write_flo(root / pair["flow"], arrays["flow"])
        io.write_image(root / pair["valid"], arrays["valid"].astype(np.uint8) * 255)
    return {"id": sample_id, "index": record["index"], "split": record["split"],
            **paths, "pair": paths.get("pair"), **{k: v for k, v in record.items()
                                                    if k not in ("index", "split")}}


def sample_id(index: int) -> str:
    return f"{index:06d}"


_WORKER_CONTEXT = {}


def _init_worker(context, single_thread=False):
    """Per-process: keep the checked sources (their cached arrays live in this process)."""
    _WORKER_CONTEXT["context"] = context
    if single_thread:
        cv2.setNumThreads(1)
        threadpoolctl.threadpool_limits(1)


def _work(job):
    """Compose and write one sample in a worker; return its manifest record."""
    index, root = job
    context = _WORKER_CONTEXT["context"]
    arrays, record = make_sample(index, context)
    return write_sample(Path(root), sample_id(index), arrays, record)


def _manifest_name(shard):
    number, total = shard
    return io.MANIFEST if total == 1 else f"manifest-{number}-of-{total}.jsonl"


def _info(config, context):
    return {"format": io.DATASET_FORMAT, "version": io.DATASET_VERSION,
            "config": config.to_json(),
            "procedural": config.lesions is None or config.bodies is None,
            "sources": {"lesions": context.lesions.folder or "procedural",
                        "lesion_layout": context.lesions.layout,
                        "lesion_libraries": context.lesions.libraries,
                        "bodies": context.bodies.folder or "procedural",
                        "num_lesions": len(context.lesions), "num_bodies": len(context.bodies)},
            "conventions": {"labels": {str(k): v for k, v in LABEL_NAMES.items()},
                            "flow": "float32 (H, W, 2), channel 0 = dx, forward t0 -> t1, px"}}


def _check_output(root: Path, info: dict):
    """Refuse a folder that holds another dataset or unrelated files."""
    if not root.exists():
        return
    if not root.is_dir():
        raise InputError(f"{root}: exists and is not a folder")
    existing = root / io.DATASET_INFO
    if existing.is_file():
        old = io.read_json(existing)
        if old.get("config") != info["config"]:
            raise InputError(f"{root}: holds another dataset (its {io.DATASET_INFO} was made "
                             "with other options); choose another --out")
        return
    if any(root.iterdir()):
        raise InputError(f"{root}: folder is not empty and holds no dataset; choose another --out")


def _done_records(root: Path, manifest: Path):
    """Records already written by an interrupted run whose files are all present."""
    if not manifest.is_file():
        return {}
    records = {}
    for record in io.read_manifest_file(manifest):
        files = [record["image"], record["labels"], record["instances"]]
        if record.get("pair"):
            files += list(record["pair"].values())
        if all((root / f).is_file() for f in files):
            records[record["index"]] = record
    return records


def make_dataset(config: DatasetConfig, out, *, workers: int = 1, shard=(1, 1),
                 progress: bool = True, only_split: str | None = None) -> dict:
    """Synthesize ``config.count`` samples (this shard's share) into ``out``.

    Resumes an interrupted run with the same options; writes manifest, splits and COCO
    annotations. With ``only_split`` ('train', 'val' or 'test') only the samples of that split
    are made (the same files as in the full dataset). Returns a summary dict (counts, skipped
    sources, paths, :func:`summarize` of the lesions).
    """
    root = Path(out)
    number, total = shard
    if not 1 <= number <= total:
        raise InputError(f"--shard {number}/{total}: K must be between 1 and N")
    context = Context.build(config)
    for path, reason in context.lesions.skipped + context.bodies.skipped:
        log.warning("skipped %s: %s", path, reason)
    info = _info(config, context)
    _check_output(root, info)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.rglob(".tmp-*"):
        stale.unlink()
    io.write_json(root / io.DATASET_INFO, info)
    io.write_json(root / io.SPLITS, {"fractions": list(config.split_fractions),
                                     "patients": context.patient_split,
                                     "bodies": context.body_split})
    manifest = root / _manifest_name(shard)
    done = _done_records(root, manifest)
    todo = [i for i in range(number - 1, config.count, total) if i not in done
            and (only_split is None or _split_of(i, config) == only_split)]
    if done:
        log.info("resuming: %d samples already written, %d to go", len(done), len(todo))
    # Rewrite the manifest with the complete records only, then append as samples finish.
    io.write_bytes(manifest, "".join(io.json_line(r) for r in sorted(done.values(),
                                                                     key=lambda r: r["index"])).encode())
    jobs = [(i, str(root)) for i in todo]
    with open(manifest, "a") as handle, _pool(context, workers) as run:
        bar = progress_bar(total=len(todo), disable=not progress, unit="sample",
                           desc="make-dataset")
        for record in run(_work, jobs):
            handle.write(io.json_line(record))
            handle.flush()
            done[record["index"]] = record
            bar.update()
        bar.close()
    records = sorted(done.values(), key=lambda r: r["index"])
    io.write_bytes(manifest, "".join(io.json_line(r) for r in records).encode())
    write_coco(root)
    return {"out": str(root), "samples": len(records), "manifest": str(manifest),
            "skipped": context.lesions.skipped + context.bodies.skipped,
            "procedural": info["procedural"], "lesions": summarize(records)}


def summarize(records) -> dict:
    """Counts over manifest records: blended lesions per diagnosis and label, how many were
    re-blended or labelled ignore as too faint, thin masks rejected, real lesions (label 3)."""
    counts = {"samples": len(records), "blended": 0, "by_diagnosis": {}, "by_label": {},
              "reblended": 0, "invisible": 0, "faded": 0, "thin_masks_rejected": 0,
              "real_lesions": 0, "by_split": {}}
    for record in records:
        counts["by_split"][record["split"]] = counts["by_split"].get(record["split"], 0) + 1
        counts["thin_masks_rejected"] += len(record.get("rejected_lesions", []))
        counts["real_lesions"] += sum(1 for l in record.get("real_lesions", []) if l.get("bbox"))
        for lesion in record["lesions"]:
            counts["blended"] += 1
            diagnosis = str(lesion["diagnosis"])
            counts["by_diagnosis"][diagnosis] = counts["by_diagnosis"].get(diagnosis, 0) + 1
            label = LABEL_NAMES.get(lesion["label"], str(lesion["label"]))
            counts["by_label"][label] = counts["by_label"].get(label, 0) + 1
            counts["reblended"] += int((lesion.get("blend_attempt") or 0) > 0)
            counts["invisible"] += int(lesion.get("visible") is False)
    return counts


@contextlib.contextmanager
def _pool(context, workers):
    """A map over jobs in order: in this process, or in ``workers`` processes."""
    if workers <= 1:
        _init_worker(context)
        try:
            yield lambda fn, jobs: map(fn, jobs)
        finally:
            _WORKER_CONTEXT.clear()
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    # One thread each for OpenCV and BLAS in every worker: the processes already fill the
    # cores, and a thread pool per process would only compete with them. Set here before
    # forking (a forked child inherits it, and must not reconfigure pools whose threads it
    # lacks); spawned workers set it themselves.
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpoolctl.threadpool_limits(1), multiprocessing.get_context(method).Pool(
                workers, _init_worker, (context, method == "spawn")) as pool:
            yield lambda fn, jobs: pool.imap(fn, jobs, chunksize=1)
    finally:
        cv2.setNumThreads(threads)


def write_coco(root) -> Path:
    """Write ``annotations.json`` (COCO) for every t0 image listed in the dataset's manifests."""
    root = Path(root)
    records = io.read_manifest(root)
    images, annotations = [], []
    for record in records:
        width, height = record["size"]
        images.append({"id": record["index"], "file_name": record["image"], "width": width,
                       "height": height, "split": record["split"]})
        for lesion in record["lesions"] + record.get("real_lesions", []):
            if not lesion.get("bbox"):
                continue
            invisible = lesion["label"] == IGNORE
            category = lesion["label"] if not invisible else (
                MALIGNANT if lesion["malignant"] else BENIGN)
            annotations.append({
                "id": len(annotations) + 1, "image_id": record["index"],
                "category_id": category, "bbox": lesion["bbox"],
                "area": lesion["area_px"], "segmentation": lesion["segmentation"],
                # A blend too faint to see is a crowd region: pycocotools ignores detections
                # on it instead of counting them right or wrong.
                "iscrowd": int(invisible),
                "instance": lesion["instance"], "source": lesion["source"],
                "diagnosis": lesion["diagnosis"], "patient": lesion.get("patient")})
    coco = {"info": {"description": "lesiontrack synthesized dataset"},
            "images": images, "annotations": annotations,
            "categories": [{"id": BENIGN, "name": "benign"}, {"id": MALIGNANT, "name": "malignant"},
                           {"id": UNKNOWN, "name": "unknown"}]}
    path = root / io.COCO_ANNOTATIONS
    io.write_json(path, coco, indent=None)
    return path
