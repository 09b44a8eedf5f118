"""Workstation side: virtual microscope, training, ONNX export and model bundles.

May import the appliance core (formats, perturbations); the core never imports this package.
"""

__version__ = "0.1.0"
