"""Offline annotation appliance: the tablet-side core (store, labels, bundles, assistance).

The core never imports Kivy or torch, so a server or a data scientist can read a project or a
bundle with nothing but the core dependencies.
"""

__version__ = "0.1.0"
