"""Cell generators on the workstation: cGAN and diffusion (seed 000), MIPR (seed 001).

See docs/generators.md. The tablet side (numpy + onnxruntime) lives in `appliance.generators`.
"""
