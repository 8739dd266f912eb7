"""File formats, in one place.

Conventions (also in README.rst):

* images: uint8 RGB, shape (H, W, 3);
* label maps: uint8 (H, W), 0 background, 1 benign, 2 malignant, 3 lesion of unknown
  diagnosis (a real lesion already on a body photo), 255 ignore;
* instance maps: uint16 (H, W), 0 none, 1..n one id per lesion (shared across a pair);
* flow: float32 (H, W, 2), channel 0 = dx (columns), channel 1 = dy, forward t0 -> t1,
  in pixels, with a boolean validity mask (H, W);
* boxes: [x, y, w, h] in pixels, as COCO.

Every writer here writes to a temporary file in the destination folder and renames it into
place, so an interrupted run never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np

BACKGROUND, BENIGN, MALIGNANT, IGNORE = 0, 1, 2, 255
#: Label of a real lesion with known position and unknown diagnosis (the body library's own
#: annotated moles): lesion for detection, ignored by the malignancy objective.
UNKNOWN = 3
#: Label value -> name, as written into dataset.json and used for the COCO categories.
LABEL_NAMES = {BACKGROUND: "background", BENIGN: "benign", MALIGNANT: "malignant",
               UNKNOWN: "unknown", IGNORE: "ignore"}
CLASS_NAMES = ("background", "benign", "malignant")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
FLO_MAGIC = 202021.25  # Middlebury .flo "PIEH" tag

DATASET_FORMAT = "lesiontrack-synth"
DATASET_VERSION = 1
DATASET_INFO = "dataset.json"
MANIFEST = "manifest.jsonl"
SPLITS = "splits.json"
COCO_ANNOTATIONS = "annotations.json"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class InputError(ValueError):
    """Bad user input: the message names the file and the problem, in one line."""


# --------------------------------------------------------------------------- images


# Leading bytes of each format OpenCV reads here, and the format a file suffix promises.
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"), (b"BM", "BMP"))
_SUFFIX_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF",
                   ".bmp": "BMP", ".webp": "WebP"}


def _image_format(data: bytes) -> str | None:
    """The image format the leading bytes of ``data`` announce, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in _SIGNATURES if data.startswith(signature)), None)


def _png_problem(data: bytes) -> str | None:
    """Walk a PNG's chunks up to IEND, checking each CRC; the problem found, or None."""
    offset = 8
    while True:
        if offset + 8 > len(data):
            return "truncated PNG (ends before its IEND chunk)"
        length = int.from_bytes(data[offset:offset + 4], "big")
        end = offset + 12 + length
        if end > len(data):
            return "truncated PNG (ends before its IEND chunk)"
        kind = data[offset + 4:offset + 8]
        if zlib.crc32(data[offset + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return f"corrupt PNG (bad checksum of its {kind.decode('latin-1')!r} chunk)"
        if kind == b"IEND":
            return None
        offset = end


@contextlib.contextmanager
def _captured_stderr():
    """Route file descriptor 2 to a temporary file for the block; yields a list that holds
    what was written there afterwards (libpng and libjpeg print their errors there)."""
    captured = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace").strip())


def _decode(path: Path, flags: int, what: str) -> np.ndarray:
    """Decode an image file with ``cv2.imdecode``; InputError naming the file and the problem
    (missing, empty, not an image of its suffix's format, truncated) otherwise. Nothing from
    the decoders reaches stderr."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise InputError(f"{path}: empty file")
    found = _image_format(data)
    if found is None:
        expected = _SUFFIX_FORMATS.get(path.suffix.lower())
        raise InputError(f"{path}: not a {expected} image" if expected else
                         f"{path}: not a readable {what}")
    if found == "JPEG" and b"\xff\xd9" not in data[-64:]:
        raise InputError(f"{path}: truncated JPEG (no end-of-image marker)")
    problem = _png_problem(data) if found == "PNG" else None
    if problem:
        raise InputError(f"{path}: {problem}")
    with _captured_stderr() as message:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        detail = message[0].splitlines()[-1] if message[0] else ""
        raise InputError(f"{path}: not a readable {what}" + (f" ({detail})" if detail else ""))
    return image


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Convert any decoded image to uint8 RGB.

    Parameters
    ----------
    image : ndarray
        (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); uint8, uint16 or float in [0, 1].
        Three- and four-channel input is taken as RGB(A); alpha is dropped.

    Returns
    -------
    ndarray
        uint8 (H, W, 3).
    """
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"unsupported image shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def read_image(path) -> np.ndarray:
    """Read a photo as uint8 RGB (H, W, 3).

    JPEG, PNG, TIFF, BMP and WebP; EXIF orientation is honoured; 16-bit, greyscale and alpha
    inputs are converted. Raises InputError naming the file for anything unreadable.
    """
    path = Path(path)
    # ANYDEPTH keeps 16 bits, ANYCOLOR keeps grey as grey; neither disables EXIF orientation.
    image = _decode(path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR, "image")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    try:
        return to_rgb8(image)
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None


def read_mask(path, shape=None) -> np.ndarray:
    """Read an 8-bit mask as bool (H, W); nonzero = inside.

    Parameters
    ----------
    path : path-like
    shape : tuple, optional
        Expected (H, W); a mismatch raises InputError naming the file.
    """
    path = Path(path)
    mask = _decode(path, cv2.IMREAD_GRAYSCALE, "mask image")
    if shape is not None and mask.shape != tuple(shape[:2]):
        raise InputError(
            f"{path}: mask size {mask.shape[1]}x{mask.shape[0]} does not match its image "
            f"{shape[1]}x{shape[0]}"
        )
    return mask > 127


def read_label_map(path) -> np.ndarray:
    """Read a uint8 label map or a uint16 instance map as stored (no conversion)."""
    return _decode(Path(path), cv2.IMREAD_UNCHANGED, "label image")


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the permissions of a normal file.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _encode(image: np.ndarray, suffix: str, quality: int) -> bytes:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif suffix == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buffer = cv2.imencode(suffix, image, params)
    if not ok:
        raise OSError(f"could not encode image as {suffix}")
    return buffer.tobytes()


def write_image(path, image: np.ndarray, *, quality: int = 95) -> None:
    """Write uint8 RGB (H, W, 3), a uint8 label map or a uint16 instance map, atomically.

    The format follows the suffix (.jpg, .png, .tif); label and instance maps must use .png.
    """
    path = Path(path)
    data = _encode(np.ascontiguousarray(image), path.suffix.lower(), quality)
    write_bytes(path, data)


def write_bytes(path, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path, obj, *, indent=1) -> None:
    """Write JSON atomically."""
    write_bytes(path, (json.dumps(obj, indent=indent, default=_json_default) + "\n").encode())


def read_json(path):
    """Read JSON; InputError naming the file if it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --------------------------------------------------------------------------- flow


def write_flo(path, flow: np.ndarray) -> None:
    """Write float32 (H, W, 2) flow as Middlebury .flo, atomically."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    height, width = flow.shape[:2]
    header = np.array([FLO_MAGIC], np.float32).tobytes() + np.array([width, height], np.int32).tobytes()
    write_bytes(path, header + np.ascontiguousarray(flow).tobytes())


def read_flo(path) -> np.ndarray:
    """Read Middlebury .flo as float32 (H, W, 2)."""
    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None or data.size < 12:
        raise InputError(f"{path}: not a .flo file")
    magic = np.frombuffer(data[:4].tobytes(), np.float32)[0]
    width, height = np.frombuffer(data[4:12].tobytes(), np.int32)
    if magic != np.float32(FLO_MAGIC) or data.size != 12 + int(width) * int(height) * 8:
        raise InputError(f"{path}: not a valid Middlebury .flo file")
    return np.frombuffer(data[12:].tobytes(), np.float32).reshape(int(height), int(width), 2).copy()


# --------------------------------------------------------------------------- datasets


def is_dataset(root) -> bool:
    """True when ``root`` holds a synthesized dataset (its dataset.json)."""
    return (Path(root) / DATASET_INFO).is_file()


def json_line(record: dict) -> str:
    """One manifest line: compact JSON and a newline."""
    return json.dumps(record, separators=(",", ":"), default=_json_default) + "\n"


def read_manifest_file(path) -> list[dict]:
    """Records of one manifest file; a last line cut short by an interruption is ignored."""
    records = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a manifest (not UTF-8 text)") from None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def read_manifest(root) -> list[dict]:
    """All sample records of a dataset, sorted by index.

    Reads ``manifest.jsonl`` and any shard manifests ``manifest-*.jsonl`` beside it (shards
    merge by concatenation). A last line cut short by an interruption is ignored.
    """
    root = Path(root)
    files = sorted(root.glob("manifest*.jsonl"))
    if not files:
        raise InputError(f"{root}: no {MANIFEST} (not a synthesized dataset?)")
    records = {}
    for file in files:
        for record in read_manifest_file(file):
            records[record["id"]] = record
    return sorted(records.values(), key=lambda record: record["index"])


def present_lesions(record: dict) -> list[dict]:
    """The lesions of a manifest record that are visible in its t0 image.

    In a pair dataset a lesion "new" at the second visit is listed with ``bbox`` null: it is
    only in t1 (its t1 box is under ``"t1"``).
    Blended lesions too faint to see are labelled 255 (``"label": 255``) and are not listed.
    The body photo's own real lesions (label 3) are under ``record["real_lesions"]``.
    """
    return [lesion for lesion in record.get("lesions", [])
            if lesion.get("bbox") and lesion.get("label") != IGNORE]


def load_sample(root, record: dict, *, pair: bool = False) -> dict:
    """Load a sample's arrays.

    Returns
    -------
    dict
        ``image`` uint8 (H, W, 3), ``labels`` uint8 (H, W), ``instances`` uint16 (H, W); with
        ``pair=True`` also ``image1``, ``labels1``, ``instances1``, ``flow`` float32 (H, W, 2)
        and ``valid`` bool (H, W).
    """
    root = Path(root)
    sample = {
        "image": read_image(root / record["image"]),
        "labels": read_label_map(root / record["labels"]),
        "instances": read_label_map(root / record["instances"]),
    }
    _check_sizes(root, record, [(record["image"], "image"), (record["labels"], "labels"),
                                (record["instances"], "instances")], sample)
    if pair:
        files = record.get("pair")
        if not files:
            raise InputError(f"{root}: sample {record['id']} has no tracking pair")
        sample["image1"] = read_image(root / files["image"])
        sample["labels1"] = read_label_map(root / files["labels"])
        sample["instances1"] = read_label_map(root / files["instances"])
        sample["flow"] = read_flo(root / files["flow"])
        sample["valid"] = read_label_map(root / files["valid"]) > 0
        _check_sizes(root, record, [(files["image"], "image1"), (files["labels"], "labels1"),
                                    (files["instances"], "instances1")], sample)
        _check_sizes(root, record, [(record["image"], "image"), (files["flow"], "flow"),
                                    (files["valid"], "valid")], sample)
    return sample


def _check_sizes(root, record, files, sample):
    """InputError naming the first of ``files`` ((path, key) pairs) whose size differs."""
    (first, key), *others = files
    height, width = sample[key].shape[:2]
    for path, other in others:
        if sample[other].shape[:2] != (height, width):
            size = "x".join(str(n) for n in sample[other].shape[1::-1])
            raise InputError(f"{root / path}: {size} does not match {root / first} "
                             f"({width}x{height}) of sample {record['id']}")


def sample_paths(sample_id: str, *, pair: bool) -> dict:
    """Relative paths of one sample's files (the dataset layout)."""
    paths = {
        "image": f"images/{sample_id}.jpg",
        "labels": f"labels/{sample_id}.png",
        "instances": f"instances/{sample_id}.png",
    }
    if pair:
        paths["pair"] = {
            "image": f"pairs/{sample_id}_t1.jpg",
            "labels": f"pairs/{sample_id}_t1_labels.png",
            "instances": f"pairs/{sample_id}_t1_instances.png",
            "flow": f"pairs/{sample_id}_flow.flo",
            "valid": f"pairs/{sample_id}_valid.png",
        }
    return paths


def list_images(folder) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
