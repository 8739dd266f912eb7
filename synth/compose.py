"""The pieces of a sample: body crop, lesion preparation, blending with a visibility check.

Li, Esteva et al. (2016, section 2): lesions scaled to their physical size, augmented and
Poisson-blended onto a crop of a body photo.  Each lesion photo gets the body photo's optical
blur; its mask loses thin appendages; its blend is tried with decreasing colour transfer until
its contrast against the skin around it (:mod:`synth.contrast`) is visible, else it is labelled
255 (ignore).
"""
from __future__ import annotations

import cv2
import numpy as np

from synth.augment import augment_lesion
from synth.blend import blend_lesion
from synth.contrast import lesion_contrast
from synth.io import BENIGN, IGNORE, MALIGNANT
from synth.lesions import remove_strands

def body_crop(body, size, mm_per_px, rng):
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


def resize_to_diameter(image, mask, diameter_px):
    """A lesion cropped to its mask's box and resized so its longest side is ``diameter_px``."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    image, mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    factor = diameter_px / max(image.shape[:2])
    new_size = (max(3, int(round(image.shape[1] * factor))), max(3, int(round(image.shape[0] * factor))))
    image = cv2.resize(image, new_size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    mask = cv2.resize(mask.astype(np.uint8), new_size, interpolation=cv2.INTER_NEAREST) > 0
    return image, mask


def prepare_lesion(image, mask, diameter_px, rng):
    """Crop a lesion to its mask, scale its longest side to ``diameter_px``, augment it."""
    image, mask = resize_to_diameter(image, mask, diameter_px)
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


def change_lesion(image, mask, plan):
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


def blend_lesions(canvas, lesions, which, *, skin, occupied, min_contrast):
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


def instance_records(instances, lesions):
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
