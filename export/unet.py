"""The U-Net used twice: segmentation (pre-label) model and upgrade model (seed 003, 3.2.3).

Seed 003 uses 4 encoder and 4 decoder blocks of two 3×3 convolutions with BatchNorm and ReLU.
Here `depth` counts resolution levels (4 = three poolings below the full resolution plus the
bottom level) and `width` the channels at full resolution, doubling per level. The defaults
(width 6, depth 4) come from the tablet's latency goal: see docs/training.md.

The upgrade model is the same network with one more input channel (the coarse mask, 0/1,
appended after the image channels: the model I/O contract's `mask_channel`).
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_WIDTH = 6
DEFAULT_DEPTH = 4


def _block(cin: int, cout: int) -> nn.Sequential:
    """Two 3×3 convolutions, each followed by BatchNorm and ReLU (bias folded into BatchNorm)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections; input H and W must be multiples of 2**(depth-1)."""

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        width: int = DEFAULT_WIDTH,
        depth: int = DEFAULT_DEPTH,
    ) -> None:
        super().__init__()
        if depth < 2 or width < 1 or in_channels < 1 or n_classes < 1:
            raise ValueError(
                f"bad U-Net shape: in={in_channels} out={n_classes} w={width} d={depth}"
            )
        self.config = {
            "in_channels": in_channels,
            "n_classes": n_classes,
            "width": width,
            "depth": depth,
        }
        chans = [width * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.down.append(_block(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c in reversed(chans[:-1]):
            self.up.append(nn.ConvTranspose2d(2 * c, c, 2, stride=2))
            self.dec.append(_block(2 * c, c))
        self.head = nn.Conv2d(chans[0], n_classes, 1)

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this."""
        return 2 ** (self.config["depth"] - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)
