"""Detection stability: perturbations, mapping back, the found-again rule, known fractions."""
import numpy as np
import pytest
from skimage import measure

from lesiontrack.detection.stability import (detection_stability, map_back, parse_perturbation,
                                             perturb, pooled, refound, stability_row)


def lesion(x, y, w, h, area=None):
    return {"bbox": [x, y, w, h], "centroid": [x + (w - 1) / 2, y + (h - 1) / 2],
            "area_px": w * h if area is None else area}


def test_exposure_acts_on_linear_light():
    image = np.array([[[0, 128, 255]]], np.uint8)
    # 128: sRGB 0.502 -> linear 0.2159 -> x0.85 0.1835 -> sRGB 0.4655 -> 118.7; 255 -> 237.4.
    np.testing.assert_array_equal(perturb(image, "exposure0.85")[0], [[[0, 119, 237]]])
    np.testing.assert_array_equal(perturb(image, "exposure1.15")[0], [[[0, 137, 255]]])
    np.testing.assert_array_equal(perturb(image, "gain0.85")[0], [[[0, 109, 217]]])


def test_jpeg_and_scale(rng):
    image = rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)
    jpeg, scale = perturb(image, "jpeg80")
    assert jpeg.shape == image.shape and scale == (1.0, 1.0) and not np.array_equal(jpeg, image)
    small, scale = perturb(image, "scale0.85")
    assert small.shape == (51, 85, 3) and scale == (0.85, 0.85)
    with pytest.raises(ValueError, match="exposureF"):
        parse_perturbation("blur2")
    with pytest.raises(ValueError, match="jpegQ"):
        parse_perturbation("jpeg0")


def test_map_back_uses_pixel_centres():
    back, = map_back([lesion(10, 4, 6, 2)], (0.5, 2.0))
    # Centroid (12.5, 4.5): x = 13 / 0.5 - 0.5, y = 5 / 2 - 0.5; box edges scale plainly.
    assert back["centroid"] == [25.5, 2.0] and back["bbox"] == [20.0, 2.0, 12.0, 1.0]


def test_found_again_rule():
    original = [lesion(10, 10, 5, 5)]  # pixels 10..14, centroid (12, 12)
    def hit(x, y):
        return int(refound(original, [{"centroid": [x, y]}])[0]) == 0

    assert hit(17.4, 12) and not hit(17.6, 12)  # box edge 14.5 grown by 3 px
    assert hit(12, 6.6) and not hit(12, 6.4)  # top edge 9.5 grown by 3 px
    # A thin box: the disc of radius max(r, 4) around the centroid also counts.
    thin = [{"bbox": [10, 10, 2, 20], "centroid": [10.5, 19.5], "area_px": 40}]
    assert refound(thin, [{"centroid": [14.4, 19.5]}])[0] == 0   # 3.9 px, outside the box
    assert refound(thin, [{"centroid": [14.6, 19.5]}])[0] == -1  # 4.1 px
    # One-to-one: one detection between two lesions finds one of them, the nearer one.
    pair = [lesion(0, 0, 4, 4), lesion(6, 0, 4, 4)]
    np.testing.assert_array_equal(refound(pair, [{"centroid": [5.0, 1.5]}]), [-1, 0])
    np.testing.assert_array_equal(refound(pair, []), [-1, -1])


def _disc_image(count=10, size=(120, 200)):
    """Skin-grey photo with ``count`` dark discs, disc i darker for smaller i."""
    image = np.full(size + (3,), 200, np.uint8)
    yy, xx = np.mgrid[:size[0], :size[1]]
    for index in range(count):
        cx, cy = 15 + 18 * index, 30 + 60 * (index % 2)
        image[(xx - cx) ** 2 + (yy - cy) ** 2 <= 25] = 40 + 5 * index
    return image


def _threshold_detector(image):
    """Dark blobs (red below 100) as lesion records."""
    labels = measure.label(image[..., 0] < 100)
    out = []
    for region in measure.regionprops(labels):
        y0, x0, y1, x1 = region.bbox
        cy, cx = region.centroid
        out.append({"bbox": [x0, y0, x1 - x0, y1 - y0], "centroid": [cx, cy],
                    "area_px": int(region.area)})
    return out


def test_a_detector_that_loses_lesions_when_darker_has_the_known_fraction():
    def detector(image):
        found = _threshold_detector(_disc_image())
        # Darker than the original: the last 4 lesions are lost and 2 others are reported.
        if image.mean() < _disc_image().mean() - 1:
            return found[:6] + [lesion(150, 5, 3, 3), lesion(5, 110, 3, 3)]
        return found

    result = detection_stability(_disc_image(), detector,
                                 perturbations=("exposure0.85", "exposure1.15"))
    assert len(result["original"]) == 10
    dark, bright = result["exposure0.85"], result["exposure1.15"]
    assert (dark["refound"], dark["refound_share"], dark["count_change"]) == (6, 0.6, -0.2)
    assert (bright["refound_share"], bright["count_change"]) == (1.0, 0.0)
    both = pooled([stability_row(result["original"], dark["lesions_back"]),
                   stability_row(result["original"], bright["lesions_back"])])
    assert both["refound_share"] == 0.8 and both["worst_count_change"] == pytest.approx(0.2)
    assert not both["meets_targets"]


def test_scaled_detections_come_back_to_the_original_lesions():
    result = detection_stability(_disc_image(), _threshold_detector,
                                 perturbations=("scale0.85", "scale1.15"))
    for name in ("scale0.85", "scale1.15"):
        assert result[name]["refound_share"] == 1.0 and result[name]["count_change"] == 0.0
        for index, found in enumerate(result[name]["found_by"]):
            moved = np.subtract(result[name]["lesions_back"][found]["centroid"],
                                result["original"][index]["centroid"])
            assert np.abs(moved).max() < 0.6, (name, index, moved)
