"""Assistance around the expert (seed 004): selector, pre-processing, pre-labeling, upgrade,
inspection and post-processing, plus the onnxruntime inference runtime and background jobs.

Pure numpy/OpenCV/scikit-image/onnxruntime: no Kivy and no torch, so the UI and the CLI call the
same functions (see docs/assistance.md).
"""
