"""Compose one sample (Li, Esteva et al. 2016, section 2 "Data Synthesis").

One sample: a crop of a body photo, augmented and shifted in skin tone, with lesions from the
lesion libraries placed by feature matching, scaled to their physical size and Poisson-blended;
its label map, instance map and per-lesion records. The body photo's own annotated moles are
labelled 3, lesion of unknown diagnosis; blends too faint to see are labelled 255; a fraction of
samples gets hair strands over skin and lesions. With pairs, a second photo t1 of the same skin
is made by a non-rigid + viewpoint warp with lesions that changed between the visits, with the
exact forward flow t0 -> t1.

Every sample is drawn from ``np.random.default_rng([seed, index])``, so the same seed gives the
same sample whatever the number of workers, shards or interruptions.
"""
from __future__ import annotations

import logging

import numpy as np

from synth.augment import (apply_hair, augment_body, fitzpatrick_from_ita, hair_layer, hairiness,
                           individual_typology_angle, photometric, shift_skin_tone)
from synth.compose import (BLUR_SIGMA_PX, blend_lesions, body_crop, change_lesion,
                           instance_records, prepare_lesion)
from synth.context import Context, split_of
from synth.contrast import lesion_contrast
from synth.io import BENIGN, IGNORE, MALIGNANT, UNKNOWN
from synth.lesions import draw_diameter_mm, is_thin_strand
from synth.pairs import (change_illumination, draw_lesion_changes, random_pair_transform,
                         warp_image)
from synth.placement import choose_sites, lesion_descriptor

log = logging.getLogger(__name__)


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
    split = split_of(index, config)
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
    canvas, skin, ignore, known, crop = body_crop(body, (width + 2 * margin, height + 2 * margin),
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
        image, mask, aug = prepare_lesion(image, mask, diameter_px, rng)
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
            lesion["t1"] = change_lesion(*lesion["t0"], plan) if plan["state"] != "gone" else (None, None)
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
    image0, labels0, instances0 = blend_lesions(base.copy(), placed, "t0", skin=skin,
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
    shapes0 = instance_records(instances0, placed + real)

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
    image1, labels1, instances1 = blend_lesions(base.copy(), placed, "t1", skin=skin,
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
    shapes1 = instance_records(instances1, placed + real)
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
