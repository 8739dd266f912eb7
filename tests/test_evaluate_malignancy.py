"""Malignancy AUC of several scores on the same lesions (evaluate.malignancy_comparison)."""
import numpy as np

from lesiontrack.evaluate import BASELINE_NAME, FCN_NAME, lesion_auc, malignancy_comparison


def test_lesion_auc_uses_only_masked_scored_lesions():
    truth = np.array([True, True, False, False, True])
    scores = np.array([0.9, 0.2, 0.3, 0.1, np.nan])
    result = lesion_auc(scores, truth, np.ones(5, bool))
    assert result == {"auc": 0.75, "malignant": 2, "benign": 2}
    assert lesion_auc(scores, truth, np.array([1, 1, 0, 0, 0], bool))["auc"] is None


def test_comparison_keeps_the_lesions_every_method_found():
    truth = np.array([True, True, False, False, True, False])
    known = np.array([True, True, True, True, True, False])
    fcn = {"found": np.array([1, 1, 1, 1, 0, 1], bool), "known": known, "truth": truth,
           "fields": {"malignancy": np.array([0.9, 0.8, 0.1, 0.2, np.nan, 0.5]),
                      "malignancy_fcn": np.array([0.1, 0.8, 0.9, 0.2, np.nan, 0.5])}}
    window = {"found": np.array([1, 1, 1, 1, 1, 1], bool), "known": known, "truth": truth,
              "fields": {"malignancy": np.array([0.6, 0.4, 0.5, 0.3, 0.9, 0.1])}}
    comparison = malignancy_comparison({FCN_NAME: fcn, BASELINE_NAME: window})
    assert (comparison["lesions"], comparison["malignant"], comparison["benign"]) == (4, 2, 2)
    aucs = {row["name"]: row["auc"] for row in comparison["rows"]}
    assert aucs["second stage"] == 1.0
    assert aucs["FCN malignant channel (mean over the lesion)"] == 0.25
    assert aucs["sliding window"] == 0.75
    assert malignancy_comparison({})["rows"] == []


def test_comparison_adds_the_mean_of_second_stage_and_colour_statistics():
    truth = np.array([True, True, False, False])
    known = np.ones(4, bool)
    # Each grader alone ranks one pair wrong; their mean ranks every lesion right.
    fcn = {"found": known, "known": known, "truth": truth,
           "fields": {"malignancy": np.array([0.9, 0.4, 0.5, 0.1]),
                      "malignancy_fcn": np.array([0.5, 0.5, 0.5, 0.5]),
                      "malignancy_colour_stats": np.array([0.5, 0.9, 0.1, 0.6])}}
    aucs = {row["name"]: row["auc"] for row in malignancy_comparison({FCN_NAME: fcn})["rows"]}
    assert aucs["second stage"] == 0.75
    assert aucs["colour statistics (on the FCN's lesions)"] == 0.75
    assert aucs["second stage and colour statistics (mean)"] == 1.0
