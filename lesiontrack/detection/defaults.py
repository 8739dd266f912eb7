"""Default filters of ``lesiontrack detect``, in a module light enough for the CLI to import.

They were chosen with ``experiments/choose_detection_filter.py runs/ds-v2`` on data outside
the test split (2026-12-01): the real body photos of the train and val splits (30 clear
moles) and the blended lesions of the first 120 val photos (443 found at threshold 0.5). The
rule: the highest precision on the real photos among the filters that keep a recall of
clear lesions of at least 0.9 there and at least 95 % of the blended lesions found (mostly
carcinomas and keratoses, often pink and faint, which a filter chosen on moles alone would
drop); ties go to the filter that keeps more blended lesions. Chosen: real recall 0.900,
precision 0.551 (0.933 / 0.389 without the filters), 95.5 % of the blended lesions kept.
"""

#: Least mean P(lesion) of a proposal (its ``score``).
MIN_SCORE = 0.65
#: Least visible contrast of a proposal: Delta E00 of its mean colour against the ring of skin
#: around it (:func:`synth.contrast.lesion_contrast`).
MIN_CONTRAST = 1.5
