"""segreg_lite: semi-supervised segmentation with registration-made pseudo-labels.

Companion package of the segreg-lite book, after Li et al., "A Unified Framework for
Semi-Supervised Image Segmentation and Registration" (arXiv 2502.03229, ISBI 2025).

Importing the package is cheap: submodules (``cohort``, ``oasis``, ``nifti``, ``splits``, ...)
are imported where they are used.
"""
__version__ = "0.1.0"
