"""Write a dataset: samples in parallel, resume after interruption, shards, COCO index.

Samples are composed by :func:`synth.sample.make_sample` (each from its own seeded generator, so
the same seed gives identical files whatever the number of workers, shards or interruptions)
and written atomically; the manifest is appended as samples finish and rewritten complete at
the end; ``dataset.json`` and ``splits.json`` record options, sources and splits.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
from pathlib import Path

import cv2
import numpy as np
import threadpoolctl

from synth import io
from synth.context import Context, DatasetConfig, split_of
from synth.io import BENIGN, IGNORE, LABEL_NAMES, MALIGNANT, UNKNOWN, InputError
from synth.progress import progress_bar
from synth.sample import make_sample

__all__ = ["DatasetConfig", "Context", "make_sample", "make_dataset", "write_sample",
           "write_coco", "summarize"]

log = logging.getLogger(__name__)


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
            and (only_split is None or split_of(i, config) == only_split)]
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
              "reblended": 0, "invisible": 0, "thin_masks_rejected": 0,
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
