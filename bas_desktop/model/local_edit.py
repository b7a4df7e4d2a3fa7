"""Local editing by example, the model side: the accepted photo version as an undo atom, and the regions.

Plain Python + numpy (no Qt): the edit panel (``bas_desktop/widgets/edit_flow.py``) shows these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bas_desktop.model.document import Change, Document, PhotoVersion
from bas_desktop.model.project import keep_original
from engine.scene import token_name


@dataclass
class PhotoVersionEdit:
    """The photo before and after an accepted local edit (one undo step; masks are untouched).

    The new version joins ``doc.photo_versions``, which the project file stores next to the original.
    """

    label: str
    old: np.ndarray
    version: PhotoVersion

    @property
    def new(self) -> np.ndarray:
        """The edited photo."""
        return self.version.image

    def undo(self, doc: Document) -> None:
        if self.version in doc.photo_versions:
            doc.photo_versions.remove(self.version)
        doc.image = self.old
        doc.notify(Change("photo"))

    def redo(self, doc: Document) -> None:
        doc.photo_versions.append(self.version)
        doc.image = self.version.image
        doc.notify(Change("photo"))

    def nbytes(self) -> int:
        return int(self.old.nbytes + self.new.nbytes)


def accept_photo_version(doc: Document, image: np.ndarray, label: str = "Local edit") -> PhotoVersionEdit:
    """Replace the document's photo by ``image`` (same size) as one undoable step."""
    if image.shape != doc.image.shape or image.dtype != np.uint8:
        raise ValueError(f"the edited photo is {image.shape}, the project's photo {doc.image.shape}")
    keep_original(doc)  # the original must be the photo before the first edit
    edit = PhotoVersionEdit(label, doc.image, PhotoVersion(np.ascontiguousarray(image), label))
    edit.redo(doc)
    doc.record(edit)
    return edit


def moved_mask_proposal(doc: Document, token: str, x: int, y: int) -> np.ndarray:
    """The dropped handle's own mask, moved so its box is centred at (x, y); a disk if it is empty."""
    h, w = doc.height, doc.width
    idx = int(token.strip("<>").removeprefix("asset")) if token.startswith("<asset") else -1
    out = np.zeros((h, w), bool)
    src = doc.layers[idx].mask >= 128 if 0 <= idx < len(doc.layers) else np.zeros((h, w), bool)
    ys, xs = np.nonzero(src)
    if len(xs) == 0:
        r = max(4, min(w, h) // 6)
        yy, xx = np.ogrid[:h, :w]
        return (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = src[y0:y1, x0:x1]
    ty, tx = y - (y1 - y0) // 2, x - (x1 - x0) // 2
    dy0, dx0 = max(0, ty), max(0, tx)
    dy1, dx1 = min(h, ty + crop.shape[0]), min(w, tx + crop.shape[1])
    if dy0 < dy1 and dx0 < dx1:
        out[dy0:dy1, dx0:dx1] = crop[dy0 - ty:dy1 - ty, dx0 - tx:dx1 - tx]
    return out


def region_warnings(doc: Document, token: str, region: np.ndarray, min_share: float = 0.05) -> list[str]:
    """Concepts other than ``token``'s that the region covers (at least ``min_share`` of their mask)."""
    out = []
    for i, layer in enumerate(doc.layers):
        if token == token_name(i):
            continue
        mask = layer.mask >= 128
        n = int(mask.sum())
        share = float((mask & region).sum()) / n if n else 0.0
        if share >= min_share:
            out.append(f"the region covers {share:.0%} of {token_name(i)} ({layer.display_name(i)}): "
                       "the edit repaints that part of it")
    return out
