"""Named observation layouts: which columns of an observation hold which quantity."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class ObsLayout:
    """Consecutive named blocks of an observation vector, e.g. ``height`` = column 0 (width 1).

    ``layout.split(obs)`` gives name -> columns (width-1 blocks as [N] vectors), so rewards and
    terminations read ``o["height"]`` instead of ``obs[:, 0]``; ``layout.join(parts)`` builds the
    observation from named parts in layout order.
    """

    def __init__(self, blocks: Sequence[tuple[str, int]]):
        self.widths = dict(blocks)
        if len(self.widths) != len(blocks):
            raise ValueError(f"duplicate block names in {blocks}")
        self.slices: dict[str, slice] = {}
        start = 0
        for name, width in blocks:
            self.slices[name] = slice(start, start + width)
            start += width
        self.dim = start

    def split(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """name -> obs[:, block] ([N] for width-1 blocks, [N, width] otherwise)."""
        if obs.shape[-1] != self.dim:
            raise ValueError(f"observation has {obs.shape[-1]} columns, the layout {self.dim}")
        return {
            name: obs[:, s.start] if self.widths[name] == 1 else obs[:, s] for name, s in self.slices.items()
        }

    def join(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The [N, dim] observation from name -> [N, width] parts."""
        if parts.keys() != self.slices.keys():
            raise ValueError(f"parts {list(parts)} do not match the layout {list(self.slices)}")
        for name, part in parts.items():
            if part.shape[-1] != self.widths[name]:
                raise ValueError(f"block {name!r} has width {part.shape[-1]}, the layout {self.widths[name]}")
        return torch.cat([parts[name] for name in self.slices], dim=1)

    def __repr__(self) -> str:
        blocks = ", ".join(f"{name} {s.start}:{s.stop}" for name, s in self.slices.items())
        return f"ObsLayout({blocks})"
