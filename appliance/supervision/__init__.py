"""Quality supervision (seeds 000 and 002): hidden control items, planted errors, scores.

Core only: numpy, OpenCV and SciPy, no Kivy, no torch. SQL lives in `appliance.store.controls`.
"""
