"""Tests of the detector input pipeline on a tiny fake dataset."""
import numpy as np
import pytest

from lesiontrack.detection.data import (sample_crops, split_records, training_dataset,
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
