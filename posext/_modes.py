"""The interpolation modes of the resampling kernels, by the integer code each kernel takes.

Kept apart from ``resample.py`` so that code which only validates a mode (the checkpoint planner) does not
import torch."""
MODES = {"nearest": 0, "bilinear": 1, "bicubic": 2}
