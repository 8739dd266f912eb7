"""Shared fixtures."""
import json
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def finish_dataset(root, lines):
    """Write a test dataset's manifest (JSON lines) and its dataset.json; return ``root``."""
    from synth import io

    (root / io.MANIFEST).write_text("\n".join(lines) + "\n")
    io.write_json(root / io.DATASET_INFO, {"format": io.DATASET_FORMAT, "version": 1,
                                           "config": {}, "procedural": True})
    return root


@pytest.fixture(scope="session")
def shared_data():
    """The real data beside the checkout (../shared/data); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def write_tiny_dataset(root, *, count=6, size=(80, 64), seed=0):
    """A synthesized-dataset look-alike: ``count`` photos of ``size`` (W, H) with disk lesions.

    Skin-coloured noise with one dark benign disk (label 1) and, on odd samples, one darker
    malignant disk (label 2); the last two samples are "val". Written with synth.io writers in
    the dataset layout (dataset.json, manifest.jsonl, images/, labels/, instances/).
    """
    from synth import io

    rng = np.random.default_rng(seed)
    root = Path(root)
    width, height = size
    yy, xx = np.mgrid[:height, :width]
    lines = []
    for index in range(count):
        sample_id = f"{index:06d}"
        image = np.clip(rng.normal([200, 160, 140], 8, (height, width, 3)), 0, 255).astype(np.uint8)
        labels = np.zeros((height, width), np.uint8)
        instances = np.zeros((height, width), np.uint16)
        lesions = []
        discs = [(1, 20 + 3 * index, 20, 6)] + ([(2, 55, 40, 7)] if index % 2 else [])
        for instance, (label, cx, cy, radius) in enumerate(discs, start=1):
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2
            image[inside] = (90, 60, 50) if label == 1 else (50, 30, 30)
            labels[inside] = label
            instances[inside] = instance
            lesions.append({"instance": instance, "label": label, "malignant": label == 2,
                            "bbox": [cx - radius, cy - radius, 2 * radius + 1, 2 * radius + 1],
                            "centroid": [cx, cy], "diagnosis": "NEV" if label == 1 else "BCC"})
        labels[:2, :2] = io.IGNORE
        paths = io.sample_paths(sample_id, pair=False)
        io.write_image(root / paths["image"], image)
        io.write_image(root / paths["labels"], labels)
        io.write_image(root / paths["instances"], instances)
        record = {"id": sample_id, "index": index, "split": "val" if index >= count - 2 else "train",
                  "size": [width, height], **paths, "pair": None, "lesions": lesions}
        lines.append(json.dumps(record))
    return finish_dataset(root, lines)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A 6-sample 80x64 detection dataset (4 train, 2 val); see write_tiny_dataset."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_dataset"))


def write_disk_dataset(root, *, splits=(("train", 8), ("test", 3)), size=128, seed=0):
    """Detection dataset look-alike of ``size`` x ``size`` photos with 2-3 disk lesions each.

    Benign disks (label 1) are mid brown, malignant ones (label 2) dark and reddish; radii
    6-14 px on skin-coloured noise with a soft shading gradient. Layout as written by
    ``synth make-dataset`` (dataset.json, manifest.jsonl, images/, labels/, instances/).
    """
    from synth import io

    rng = np.random.default_rng(seed)
    root = Path(root)
    yy, xx = np.mgrid[:size, :size]
    lines, index = [], 0
    for split, count in splits:
        for _ in range(count):
            sample_id = f"{index:06d}"
            shade = 1.0 + 0.1 * (xx / size - 0.5)[:, :, None]
            image = np.clip(rng.normal([205, 165, 145], 6, (size, size, 3)) * shade, 0, 255)
            labels = np.zeros((size, size), np.uint8)
            instances = np.zeros((size, size), np.uint16)
            lesions = []
            cells = rng.permutation(4)[: rng.integers(2, 4)]  # one disk per image quadrant
            for instance, cell in enumerate(cells, start=1):
                label = 1 + int(rng.integers(0, 2))
                radius = int(rng.integers(6, 15))
                cx = int(cell % 2) * size // 2 + int(rng.integers(radius + 4, size // 2 - radius - 4))
                cy = int(cell // 2) * size // 2 + int(rng.integers(radius + 4, size // 2 - radius - 4))
                inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2
                image[inside] = (130, 90, 70) if label == 1 else (70, 35, 35)
                labels[inside] = label
                instances[inside] = instance
                lesions.append({"instance": instance, "label": label, "malignant": label == 2,
                                "diagnosis": "NEV" if label == 1 else "MEL",
                                "bbox": [cx - radius, cy - radius, 2 * radius + 1, 2 * radius + 1],
                                "centroid": [cx, cy]})
            paths = io.sample_paths(sample_id, pair=False)
            io.write_image(root / paths["image"], image.astype(np.uint8))
            io.write_image(root / paths["labels"], labels)
            io.write_image(root / paths["instances"], instances)
            lines.append(json.dumps({"id": sample_id, "index": index, "split": split,
                                     "size": [size, size], **paths, "pair": None,
                                     "lesions": lesions}))
            index += 1
    return finish_dataset(root, lines)


@pytest.fixture(scope="session")
def disk_dataset(tmp_path_factory):
    """128x128 photos with 2-3 benign/malignant disks: 8 train, 3 test (write_disk_dataset)."""
    return write_disk_dataset(tmp_path_factory.mktemp("disk_dataset"))


TINY_FILTERS = (4, 8, 8, 8)


@pytest.fixture(scope="session")
def tiny_detector_path(tmp_path_factory):
    """A randomly initialised small detector (filters 4-8-8-8, stride 8) saved as .keras."""
    import keras

    from lesiontrack.detection.model import FCN

    keras.backend.clear_session()
    path = tmp_path_factory.mktemp("tiny_detector") / "tiny.keras"
    FCN(filters=TINY_FILTERS).save(path)
    return path


def _smooth_texture(height, width, *, seed):
    """Seeded smooth random RGB texture, uint8 (H, W, 3)."""
    import cv2

    generator = np.random.default_rng(seed)
    texture = np.zeros((height, width, 3), np.float32)
    for sigma, weight in ((1.0, 0.5), (3.0, 1.0), (8.0, 1.0)):
        noise = generator.normal(size=(height, width, 3)).astype(np.float32)
        layer = cv2.GaussianBlur(noise, (0, 0), sigma)
        texture += weight * layer / layer.std()
    texture = 128 + 40 * texture / texture.std()
    return np.clip(texture, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def shifted_pair():
    """Factory: (image0, image1) of a smooth texture, image1 translated by (dx, dy) pixels.

    image0[y, x] == image1[y + dy, x + dx], i.e. the true forward flow is (dx, dy) everywhere.
    """
    def make(size=96, shift=(6, -4), seed=0):
        margin = 16
        texture = _smooth_texture(size + 2 * margin, size + 2 * margin, seed=seed)
        dx, dy = shift
        image0 = texture[margin:margin + size, margin:margin + size]
        image1 = texture[margin - dy:margin - dy + size, margin - dx:margin - dx + size]
        return np.ascontiguousarray(image0), np.ascontiguousarray(image1)

    return make
