"""Classical methods the learned models are compared against: the sliding-window detector
(``sliding_window``, serves detection) and dense correspondence by SIFT Flow, DSP and OpenCV's
DeepFlow and DIS (``siftflow``, ``dsp``, ``opencv_flow``, serve tracking). None of them imports
TensorFlow."""
