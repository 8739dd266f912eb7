"""Contact sheet of dataset samples: image, label overlay, and the pair with its flow."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from synth import io

_COLOURS = {io.BENIGN: (40, 200, 60), io.MALIGNANT: (230, 40, 40), io.UNKNOWN: (255, 200, 0),
            io.IGNORE: (60, 140, 255)}


def label_overlay(image: np.ndarray, labels: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """uint8 RGB image with labels tinted and outlined.

    Green benign, red malignant, amber real lesion of unknown diagnosis (3), blue ignore.
    """
    out = image.astype(np.float32)
    for value, colour in _COLOURS.items():
        region = labels == value
        out[region] = (1 - alpha) * out[region] + alpha * np.asarray(colour, np.float32)
    out = out.astype(np.uint8)
    for value, colour in _COLOURS.items():
        contours, _ = cv2.findContours((labels == value).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 1)
    return out


def flow_arrows(image: np.ndarray, flow: np.ndarray, valid: np.ndarray, *, step: int = 40) -> np.ndarray:
    """uint8 RGB image with an arrow every ``step`` pixels from p to p + flow(p) (valid only)."""
    out = image.copy()
    height, width = flow.shape[:2]
    for y in range(step // 2, height, step):
        for x in range(step // 2, width, step):
            if not valid[y, x]:
                continue
            dx, dy = flow[y, x]
            cv2.arrowedLine(out, (x, y), (int(round(x + dx)), int(round(y + dy))), (255, 230, 0), 1,
                            cv2.LINE_AA, tipLength=0.2)
            cv2.circle(out, (x, y), 2, (255, 230, 0), -1)
    return out


def match_lines(image0, image1, instances0, instances1, flow=None) -> np.ndarray:
    """t0 and t1 side by side with a line joining each lesion's centroids in both photos."""
    gap = 8
    height, width = image0.shape[:2]
    out = np.full((height, 2 * width + gap, 3), 255, np.uint8)
    out[:, :width], out[:, width + gap:] = label_boundary(image0, instances0), label_boundary(image1, instances1)
    rng = np.random.default_rng(0)
    for instance in np.unique(instances0):
        if instance == 0 or not (instances1 == instance).any():
            continue
        y0, x0 = np.argwhere(instances0 == instance).mean(axis=0)
        y1, x1 = np.argwhere(instances1 == instance).mean(axis=0)
        colour = tuple(int(c) for c in rng.integers(60, 255, 3))
        cv2.line(out, (int(x0), int(y0)), (int(x1) + width + gap, int(y1)), colour, 1, cv2.LINE_AA)
    return out


def label_boundary(image, instances):
    """Outline every instance in yellow."""
    out = image.copy()
    contours, _ = cv2.findContours((instances > 0).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 230, 0), 1)
    return out


def _caption(tile, text):
    tile = tile.copy()
    cv2.rectangle(tile, (0, 0), (tile.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(tile, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(root, *, count: int = 6, split=None, tile: int = 320, seed: int = 0) -> np.ndarray:
    """Draw ``count`` samples of a dataset as rows of tiles.

    Each row: the image, its label overlay and, for pairs, t1 with the same lesions outlined,
    flow arrows on t0 and both photos side by side with lines joining each lesion.

    Returns
    -------
    ndarray
        uint8 RGB contact sheet.
    """
    root = Path(root)
    records = io.read_manifest(root)
    if split:
        records = [r for r in records if r["split"] == split]
    if not records:
        raise io.InputError(f"{root}: no samples" + (f" in split {split!r}" if split else ""))
    order = np.random.default_rng(seed).permutation(len(records))[:count]
    rows = []
    for index in sorted(order):
        record = records[index]
        pair = bool(record.get("pair"))
        sample = io.load_sample(root, record, pair=pair)
        lesions = record["lesions"]
        malignant = sum(1 for l in lesions if l["malignant"])
        tiles = [_caption(sample["image"], f"{record['id']} {record['split']} {record['body']['id']}"),
                 _caption(label_overlay(sample["image"], sample["labels"]),
                          f"{len(lesions) - malignant} benign, {malignant} malignant")]
        if pair:
            states = [l.get("change", {}).get("state", "") for l in lesions]
            changed = sum(1 for s in states if s not in ("same", ""))
            tiles.append(_caption(label_overlay(sample["image1"], sample["labels1"]),
                                  f"t1, {changed} lesions changed"))
            tiles.append(_caption(flow_arrows(sample["image"], sample["flow"], sample["valid"]),
                                  "flow t0 -> t1"))
        row = [cv2.resize(t, (tile, int(tile * t.shape[0] / t.shape[1])), interpolation=cv2.INTER_AREA)
               for t in tiles]
        if pair:
            lines = match_lines(sample["image"], sample["image1"], sample["instances"],
                                sample["instances1"])
            row.append(cv2.resize(lines, (2 * tile, int(2 * tile * lines.shape[0] / lines.shape[1])),
                                  interpolation=cv2.INTER_AREA))
        height = max(t.shape[0] for t in row)
        row = [np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in row]
        rows.append(np.concatenate(row, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)
