"""Compose samples and write a dataset (Li, Esteva et al. 2016, section 2 "Data Synthesis").

One sample: a crop of a body photo, augmented and shifted in skin tone, with lesions from the
lesion library placed by feature matching, scaled to their physical size and Poisson-blended;
its label map, instance map and per-lesion records. With pairs, a second photo t1 of the same
skin is made by a non-rigid + viewpoint warp with lesions that changed between the visits,
with the exact forward flow t0 -> t1.

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
from tqdm import tqdm

from synth import io
from synth.augment import augment_body, augment_lesion, photometric, shift_skin_tone
from synth.blend import blend_lesion
from synth.deform import (change_illumination, draw_lesion_changes, random_pair_transform,
                          warp_image)
from synth.io import BENIGN, IGNORE, MALIGNANT, InputError
from synth.placement import choose_sites, lesion_descriptor
from synth.sources import BodySource, LesionSource, assign_splits

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that decides a dataset's content (``workers`` and ``shard`` do not)."""

    count: int
    lesions: str | None = None
    bodies: str | None = None
    pairs: bool = False
    seed: int = 0
    size: tuple = (512, 512)
    mm_per_px: float = 0.4
    lesions_per_image: tuple = (3, 9)
    malignant_fraction: float = 0.5
    split_fractions: tuple = (0.7, 0.15, 0.15)
    pair_strength: float = 1.0

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("size", "lesions_per_image", "split_fractions"):
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
        lesions = LesionSource(config.lesions, seed=config.seed, check=check)
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
    image, skin, ignore = body["image"], body["skin"], body["ignore"]
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
    scale = out_w / crop_w
    params = {"crop": [x0, y0, crop_w, crop_h], "zoom": scale,
              "mm_per_px": mm_per_px / scale}
    return out, out_skin, out_ignore, params


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


def _draw_diameter_mm(record, rng):
    """Physical size: the recorded diameter with +-15 % jitter, else a realistic random size."""
    if record.get("diameter_mm"):
        return float(record["diameter_mm"]) * float(rng.uniform(0.85, 1.15))
    # Clinically seen lesions: log-normal around 5 mm (moles 2-6 mm, carcinomas larger).
    return float(np.clip(np.exp(rng.normal(np.log(5.0), 0.45)), 2.0, 25.0))


def _blend_all(canvas, lesions, which):
    """Blend the chosen lesions into ``canvas``; return the image, labels and instances."""
    labels = np.zeros(canvas.shape[:2], np.uint8)
    instances = np.zeros(canvas.shape[:2], np.uint16)
    for lesion in lesions:
        image, mask = lesion[which]
        if image is None:
            continue
        canvas, region, _ = blend_lesion(canvas, image, mask, lesion["center"])
        labels[region] = MALIGNANT if lesion["meta"]["malignant"] else BENIGN
        instances[region] = lesion["instance"]
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

    # Body: crop, flips / rotation / scale, then existing lesions become "ignore".
    body_index = int(rng.choice(bodies))
    body_meta = context.bodies.records[body_index]
    body = context.bodies.load(body_index)
    # Crop a margin larger than the sample so the rotation of augment_body brings no empty
    # corners into the frame, then cut the sample from the centre.
    width, height = config.size
    margin = int(0.12 * max(width, height))
    canvas, skin, ignore, crop = _body_crop(body, (width + 2 * margin, height + 2 * margin),
                                            body_meta["mm_per_px"], rng)
    canvas, masks, body_aug = augment_body(canvas, {"skin": skin, "ignore": ignore}, rng=rng,
                                           scale_range=(1.0, 1.0))
    window = (slice(margin, margin + height), slice(margin, margin + width))
    canvas = np.ascontiguousarray(canvas[window])
    skin, ignore = masks["skin"][window].astype(bool), masks["ignore"][window].astype(bool)
    if skin.mean() < 0.05:
        # Almost no skin in this crop: use the whole frame rather than fail the sample.
        skin = np.ones_like(skin)
    mm_per_px = crop["mm_per_px"]

    # Lesions: balanced benign / malignant, physical size from mm.
    num = int(rng.integers(config.lesions_per_image[0], config.lesions_per_image[1] + 1))
    lesions = []
    for _ in range(num):
        pick_malignant = malignant and (not benign or rng.random() < config.malignant_fraction)
        pool = malignant if pick_malignant else benign
        lesion_index = int(rng.choice(pool))
        meta = context.lesions.records[lesion_index]
        image, mask = context.lesions.load(lesion_index)
        diameter_mm = _draw_diameter_mm(meta, rng)
        diameter_px = float(np.clip(diameter_mm / mm_per_px, 6.0, min(config.size) / 5))
        image, mask, aug = _prepare_lesion(image, mask, diameter_px, rng)
        lesions.append({"meta": meta, "t0": (image, mask), "diameter_mm": diameter_mm,
                        "diameter_px": diameter_px, "augment": aug})

    plans = None
    if config.pairs:
        plans = draw_lesion_changes(len(lesions), rng=rng,
                                    malignant=[l["meta"]["malignant"] for l in lesions])
    growth = [max(1.0, p["scale"]) for p in plans] if plans else [1.0] * len(lesions)

    # Placement by matching each lesion's surrounding-skin descriptor with body sites.
    descriptors = np.stack([lesion_descriptor(l["t0"][0], l["t0"][1],
                                              fitzpatrick=l["meta"].get("fitzpatrick"))
                            for l in lesions])
    radii = np.array([0.5 * max(l["t0"][1].shape) * g + 3 for l, g in zip(lesions, growth)])
    centers = choose_sites(canvas, skin, descriptors, radii, rng=rng, occupied=ignore)
    placed = []
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

    # Skin tone over the Fitzpatrick range, on the body before blending so lesions keep
    # their own colour (they are blended by gradients, so they take the new tone's level).
    tone = {"applied": False}
    if rng.random() < 0.6:
        canvas, tone = shift_skin_tone(canvas, skin, rng=rng)
        tone["applied"] = True
    base = canvas
    image0, labels0, instances0 = _blend_all(base.copy(), placed, "t0")
    labels0[ignore & (labels0 == 0)] = IGNORE
    image0_final, photo0 = photometric(image0, rng=rng)
    arrays = {"image": image0_final, "labels": labels0, "instances": instances0}
    shapes0 = _instance_records(instances0, placed)

    record = {
        "index": index,
        "split": split,
        "size": list(config.size),
        "body": {**{k: body_meta[k] for k in ("id", "source", "mm_per_px")}, **crop,
                 "augment": body_aug},
        "skin_tone": tone,
        "photometric": photo0,
        "lesions": [],
    }
    for lesion in placed:
        meta = lesion["meta"]
        entry = {"instance": lesion["instance"], "source": meta["source"], "lesion_id": meta["id"],
                 "patient": meta["patient"], "diagnosis": meta["diagnosis"],
                 "malignant": meta["malignant"], "label": MALIGNANT if meta["malignant"] else BENIGN,
                 "mask_source": meta.get("mask_source", "procedural"),
                 "diameter_mm": round(lesion["diameter_mm"], 2),
                 "diameter_px": round(lesion["diameter_px"], 2), "center": list(lesion["center"]),
                 "augment": lesion["augment"]}
        entry.update(shapes0.get(lesion["instance"], {"bbox": None, "centroid": None,
                                                      "area_px": 0, "segmentation": []}))
        record["lesions"].append(entry)

    if config.pairs:
        arrays, record = _make_pair(arrays, record, base, placed, ignore, rng, config)
    return arrays, record


def _make_pair(arrays, record, base, placed, ignore, rng, config):
    """Add t1: lesions as at the second visit, warped, re-lit; exact forward flow."""
    image1, labels1, instances1 = _blend_all(base.copy(), placed, "t1")
    labels1[ignore & (labels1 == 0)] = IGNORE
    transform = random_pair_transform(config.size, rng=rng, strength=config.pair_strength)
    coverage = transform.coverage()
    image1 = warp_image(image1, transform)
    labels1 = warp_image(labels1, transform, interpolation="nearest")
    labels1[~coverage] = IGNORE
    instances1 = warp_image(instances1, transform, interpolation="nearest")
    instances1[~coverage] = 0
    image1, light = change_illumination(image1, rng=rng)
    image1, photo1 = photometric(image1, rng=rng)
    shapes1 = _instance_records(instances1, placed)
    for entry, lesion in zip(record["lesions"], placed):
        plan = lesion["plan"]
        entry["change"] = {"state": plan["state"], "scale": round(plan["scale"], 3),
                           "colour_shift": [round(c, 2) for c in plan["colour_shift"]]}
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
                        "bodies": context.bodies.folder or "procedural",
                        "num_lesions": len(context.lesions), "num_bodies": len(context.bodies)},
            "conventions": {"labels": {"0": "background", "1": "benign", "2": "malignant",
                                       "255": "ignore"},
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
                 progress: bool = True) -> dict:
    """Synthesize ``config.count`` samples (this shard's share) into ``out``.

    Resumes an interrupted run with the same options; writes manifest, splits and COCO
    annotations. Returns a summary dict (counts, skipped sources, paths).
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
    todo = [i for i in range(number - 1, config.count, total) if i not in done]
    if done:
        log.info("resuming: %d samples already written, %d to go", len(done), len(todo))
    # Rewrite the manifest with the complete records only, then append as samples finish.
    io.write_bytes(manifest, "".join(io.json_line(r) for r in sorted(done.values(),
                                                                     key=lambda r: r["index"])).encode())
    jobs = [(i, str(root)) for i in todo]
    with open(manifest, "a") as handle, _pool(context, workers) as run:
        bar = tqdm(total=len(todo), disable=not progress, unit="sample", desc="make-dataset")
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
            "procedural": info["procedural"]}


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
        for lesion in record["lesions"]:
            if not lesion.get("bbox"):
                continue
            annotations.append({
                "id": len(annotations) + 1, "image_id": record["index"],
                "category_id": lesion["label"], "bbox": lesion["bbox"],
                "area": lesion["area_px"], "segmentation": lesion["segmentation"], "iscrowd": 0,
                "instance": lesion["instance"], "source": lesion["source"],
                "diagnosis": lesion["diagnosis"], "patient": lesion["patient"]})
    coco = {"info": {"description": "lesiontrack synthesized dataset"},
            "images": images, "annotations": annotations,
            "categories": [{"id": BENIGN, "name": "benign"}, {"id": MALIGNANT, "name": "malignant"}]}
    path = root / io.COCO_ANNOTATIONS
    io.write_json(path, coco, indent=None)
    return path
