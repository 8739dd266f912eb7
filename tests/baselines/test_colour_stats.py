"""Colour-statistics reference classifier."""
import numpy as np
import pytest

from lesiontrack.baselines.colour_stats import (FEATURE_NAMES, colour_features, ellipse_mask,
                                                fit_colour_stats, lesion_features,
                                                load_colour_stats, save_colour_stats)


def test_features_of_a_uniform_red_patch():
    red = np.full((24, 24, 3), (255, 0, 0), np.uint8)
    features = dict(zip(FEATURE_NAMES, colour_features(red)))
    assert len(FEATURE_NAMES) == 31
    # CIE L*a*b* of sRGB red (D65): 53.24, 80.09, 67.20; HSV hue 0 (+90), S = V = 1.
    for name, value in (("L", 53.24), ("a", 80.09), ("b", 67.20), ("hue", 90.0),
                        ("saturation", 1.0), ("value", 1.0)):
        assert features[f"{name}_mean"] == pytest.approx(value, abs=0.05)
        assert features[f"{name}_p10"] == pytest.approx(value, abs=0.05)
        assert features[f"{name}_p90"] == pytest.approx(value, abs=0.05)
        assert features[f"{name}_std"] == pytest.approx(0.0, abs=1e-4)
    assert features["laplacian"] == pytest.approx(0.0, abs=1e-4)


def test_features_read_only_the_inscribed_ellipse():
    patch = np.full((24, 24, 3), 255, np.uint8)
    patch[~ellipse_mask(24)] = 0  # black corners outside the ellipse
    features = dict(zip(FEATURE_NAMES, colour_features(patch)))
    assert features["L_p10"] == pytest.approx(100.0, abs=0.05)
    assert ellipse_mask(24).sum() == pytest.approx(np.pi * 12 ** 2, rel=0.03)


def test_lesion_features_from_boxes_of_a_photo():
    image = np.zeros((40, 40, 3), np.uint8)
    image[5:15, 5:15] = (255, 0, 0)
    features = lesion_features(image, [[5, 5, 10, 10], [25, 25, 10, 10]])
    assert features.shape == (2, 31)
    assert features[0, FEATURE_NAMES.index("a_mean")] > 79
    assert features[1, FEATURE_NAMES.index("L_mean")] == pytest.approx(0.0, abs=1e-3)


def test_fit_separates_a_toy_problem_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 31))
    malignant = features[:, 0] > 0.3  # unbalanced: about 38 % positive
    model = fit_colour_stats(features, malignant, seed=0, max_iter=50)
    scores = model.predict(features)
    assert scores[malignant].mean() > 0.7 and scores[~malignant].mean() < 0.3
    save_colour_stats(model, tmp_path / "colour.pkl")
    np.testing.assert_allclose(load_colour_stats(tmp_path / "colour.pkl").predict(features), scores)
    with pytest.raises(ValueError):
        fit_colour_stats(features, np.ones(200, bool))


def test_unreadable_model_file_names_the_file(tmp_path):
    from synth.io import InputError

    (tmp_path / "bad.pkl").write_bytes(b"nonsense")
    with pytest.raises(InputError, match="bad.pkl"):
        load_colour_stats(tmp_path / "bad.pkl")
