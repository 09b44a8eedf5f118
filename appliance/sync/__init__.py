"""The tablet's side of sync with the lab server (no Kivy, no torch, standard library HTTP).

`appliance sync DIR` pushes the operation log and blobs the server lacks, pulls everyone
else's operations after the last checkpoint and installs new model bundles.
"""
