"""Tests of the detector input pipeline on a tiny fake dataset."""
import numpy as np
import pytest

from lesiontrack.detection.data import (augment_crop, body_to_sample, crop_weights,
                                        hairiness, hard_negative_points, read_hard_negatives,
                                        sample_crops, split_records, training_dataset,
                                        validation_samples)
from lesiontrack.imaging import pad_to_stride
from synth.io import InputError


def batches(dataset, seed, **options):
    records = split_records(dataset, "train")
    stream = training_dataset(dataset, records, count=6, crop=32, batch=4,
                              rng=np.random.default_rng(seed), **options)
    return [(np.asarray(x), np.asarray(y)) for x, y in stream]


def test_shapes_values_and_determinism(tiny_dataset):
    first = batches(tiny_dataset, 7)
    assert [x.shape for x, _ in first] == [(4, 32, 32, 3), (2, 32, 32, 3)]
    assert [y.shape for _, y in first] == [(4, 32, 32), (2, 32, 32)]
    x, y = first[0]
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255
    assert y.dtype == np.uint8 and set(np.unique(y)) <= {0, 1, 2, 255}
    again = batches(tiny_dataset, 7)
    for (x0, y0), (x1, y1) in zip(first, again):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    other = batches(tiny_dataset, 8)
    assert not np.array_equal(first[0][0], other[0][0])


def test_crops_contain_lesions_when_biased(tiny_dataset):
    records = split_records(tiny_dataset, "train")
    stream = training_dataset(tiny_dataset, records, count=8, crop=16, batch=8,
                              rng=np.random.default_rng(0), lesion_bias=1.0, augment=False)
    _, labels = next(iter(stream))
    assert all(((np.asarray(y) == 1) | (np.asarray(y) == 2)).any() for y in labels)


def test_unaugmented_crop_matches_the_files(tiny_dataset):
    from synth.io import load_sample

    records = split_records(tiny_dataset, "train")
    rng = np.random.default_rng(3)
    params = sample_crops(records, count=2, crop=32, rng=np.random.default_rng(3), augment=False)
    x, y = next(iter(training_dataset(tiny_dataset, records, count=2, crop=32, batch=2, rng=rng,
                                      augment=False)))
    sample = load_sample(tiny_dataset, records[params["index"][0]])
    top, left = params["top"][0], params["left"][0]
    np.testing.assert_array_equal(np.asarray(y)[0], sample["labels"][top:top + 32, left:left + 32])
    np.testing.assert_allclose(np.asarray(x)[0], sample["image"][top:top + 32, left:left + 32],
                               atol=1.0)


def test_small_photos_are_padded_with_ignore(tiny_dataset):
    records = split_records(tiny_dataset, "train")
    x, y = next(iter(training_dataset(tiny_dataset, records, count=1, crop=96, batch=1,
                                      rng=np.random.default_rng(0), augment=False)))
    y = np.asarray(y)[0]
    assert y.shape == (96, 96)
    assert (y[:, :8] == 255).all() and (y[:16] == 255).all()   # 80x64 photo centred


def test_validation_samples_padded_to_stride(tiny_dataset):
    records = split_records(tiny_dataset, "val")
    samples = list(validation_samples(tiny_dataset, records, stride=24))
    assert len(samples) == 2
    image, labels = samples[0]
    assert image.shape == (1, 72, 96, 3) and labels.shape == (72, 96)
    assert (labels[64:] == 255).all() and (labels[:, 80:] == 255).all()
    image, labels = next(validation_samples(tiny_dataset, records, stride=8, crop=32, limit=1))
    assert image.shape == (1, 32, 32, 3)


def test_pad_to_stride_and_missing_split(tiny_dataset):
    padded, size = pad_to_stride(np.ones((5, 9), np.uint8), 4, mode="constant", constant=255)
    assert padded.shape == (8, 12) and size == (5, 9) and padded[5:].min() == 255
    with pytest.raises(InputError, match="nope"):
        split_records(tiny_dataset, "nope")


NEUTRAL = {"flip_ud": False, "flip_lr": False, "rotate": 0, "gain_r": 1.0, "gain_g": 1.0,
           "gain_b": 1.0, "exposure": 1.0, "gamma": 1.0, "contrast": 1.0, "hue": 0.0,
           "blur": 0.0, "quality": 0}


def test_augment_crop_exposure_scale_and_jpeg_have_known_effects():
    image = np.full((40, 40, 3), 100, np.uint8)
    labels = np.zeros((40, 40), np.uint8)
    labels[:, 20:] = 1
    window = {"top": 0, "left": 0, "side": 40}
    x, y = augment_crop(image, labels, {**window, **NEUTRAL}, crop=40)
    np.testing.assert_array_equal(x, 100)
    np.testing.assert_array_equal(y, labels)
    x, _ = augment_crop(image, labels, {**window, **NEUTRAL, "exposure": 1.2}, crop=40)
    np.testing.assert_array_equal(x, 120)
    # Zoom 0.5: a 40 px window becomes a 20 px crop, labels by nearest neighbour.
    _, y = augment_crop(image, labels, {**window, **NEUTRAL}, crop=20)
    assert (y[:, :10] == 0).all() and (y[:, 10:] == 1).all()
    # Past the edge: black image, ignore labels.
    x, y = augment_crop(image, labels, {"top": -10, "left": 0, "side": 40, **NEUTRAL}, crop=40)
    assert (y[:10] == 255).all() and (x[:10] == 0).all() and (y[10:] != 255).all()
    noisy = np.random.default_rng(0).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    x, y = augment_crop(noisy, labels, {**window, **NEUTRAL, "quality": 60}, crop=40)
    assert 1.0 < np.abs(x - noisy).mean() < 60 and np.array_equal(y, labels)


def test_hairiness_of_a_thin_dark_line():
    flat = np.full((64, 64, 3), 180, np.uint8)
    assert hairiness(flat) == 0.0
    hairy = flat.copy()
    hairy[30] = 130                      # one dark strand, 1 px thick, 50 grey levels deep
    assert hairiness(hairy) == pytest.approx(64 / 64 ** 2)
    assert crop_weights([0.0, 0.025, 0.2], hair_weight=2.0).tolist() == [1.0, 2.0, 3.0]


def test_body_points_follow_the_writers_crop_flip_and_rotation():
    import cv2

    from synth.augment import augment_body

    body = np.full((160, 200, 3), 200, np.uint8)
    body[84:87, 149:152] = 0             # a dark dot centred on (150, 85)
    size, margin = 64, int(0.12 * 64)
    crop = [90, 60, 80, 80]
    x0, y0, w, h = crop
    canvas = cv2.resize(body[y0:y0 + h, x0:x0 + w], (size + 2 * margin,) * 2,
                        interpolation=cv2.INTER_AREA)
    for seed in range(4):
        warped, _, augment = augment_body(canvas, None, rng=np.random.default_rng(seed),
                                          horizontal_flip_probability=0.5,
                                          vertical_flip_probability=0.5, max_rotation=10,
                                          image_fill=(255, 255, 255))
        sample = warped[margin:margin + size, margin:margin + size].astype(float).sum(-1)
        record = {"size": [size, size], "body": {"crop": crop, "augment": augment}}
        (x, y), = body_to_sample([[150, 85]], record)[0]
        row, col = np.unravel_index(np.argmin(sample), sample.shape)
        assert abs(x - col) <= 1.0 and abs(y - row) <= 1.0, (seed, augment)


def test_crops_go_to_hard_negatives_and_hairy_records(tiny_dataset, tmp_path):
    from synth.io import write_json

    records = [dict(r, body={"id": "b", "crop": [0, 0, 80 + 2 * 9, 64 + 2 * 9],
                             "augment": {}}, size=[80, 64])
               for r in split_records(tiny_dataset, "train")]
    path = tmp_path / "negatives.json"
    # Margin 9 px (0.12 x 80): body point (9 + 70, 9 + 50) is sample point (70, 50).
    write_json(path, {"bodies": {"b": {"boxes": [[77, 57, 4, 4]]}}})
    points = hard_negative_points(records, read_hard_negatives(path))
    np.testing.assert_allclose(points[0], [[70, 50]])
    params = sample_crops(records, count=50, crop=16, rng=np.random.default_rng(0),
                          lesion_bias=0.0, hard_negatives=points, hard_negative_bias=1.0,
                          augment=False)
    assert ((params["left"] <= 70) & (70 < params["left"] + 16)).all()
    assert ((params["top"] <= 50) & (50 < params["top"] + 16)).all()
    weights = np.array([0.0, 0.0, 0.0, 1.0])
    params = sample_crops(records, count=20, crop=16, rng=np.random.default_rng(0),
                          weights=weights)
    assert (params["index"] == 3).all()
    with pytest.raises(InputError, match="not a hard-negative file"):
        write_json(tmp_path / "bad.json", {"boxes": []})
        read_hard_negatives(tmp_path / "bad.json")
