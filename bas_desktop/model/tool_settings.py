"""The options the painting tools share (brush size, hardness, fill tolerance ...); plain Python."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ToolSettings:
    """Options shared by the tools (the options panel edits it; QSettings persists it)."""

    brush_size: float = 40.0  # diameter in image pixels
    hardness: float = 0.7
    fill_from_photo: bool = False
    tolerance: int = 24
    lasso_subtract: bool = False

    def grow(self) -> None:
        """``]``: a bigger brush (about 15% per step)."""
        self.brush_size = min(2000.0, max(self.brush_size + 1, self.brush_size * 1.15))

    def shrink(self) -> None:
        """``[``: a smaller brush."""
        self.brush_size = max(1.0, min(self.brush_size - 1, self.brush_size / 1.15))
