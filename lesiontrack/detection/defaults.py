"""Default filters of ``lesiontrack detect``, in a module light enough for the CLI to import.

They were chosen with ``experiments/choose_detection_filter.py`` on the real body photos of
the train and val splits of the training dataset (never the test split): among the settings
that keep a recall of clear lesions of at least 0.9 there, the one with the highest precision
(recall 0.900, precision 0.587, against 0.933 / 0.389 without the two filters; 2026-12-01).
"""

#: Least mean P(lesion) of a proposal (its ``score``).
MIN_SCORE = 0.65
#: Least visible contrast of a proposal: Delta E00 of its mean colour against the ring of skin
#: around it (:func:`synth.contrast.lesion_contrast`).
MIN_CONTRAST = 3.0
