"""Synthetic cells on the tablet: generator bundles, their numpy samplers, compositing.

numpy + onnxruntime only (no torch). See docs/generators.md.
"""
