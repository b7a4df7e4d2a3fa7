"""Segment Anything for click-to-mask and mask suggestions (no Qt).

Typical use from the app (slow calls in a worker thread)::

    manager = ModelManager()                          # $BAS_CACHE_DIR or the platform cache
    if not manager.is_available(VIT_B):
        manager.download(VIT_B, progress_cb, cancel_flag)   # or manager.register(VIT_B, picked_path)
    session = SamSession.open(VIT_B, manager)         # worker: load weights, export decoder once
    session.set_image(rgb, progress_cb, cancel_flag)  # worker: encoder once per photo, then cached
    pred = session.predict([(x, y)], [1])             # any thread, tens of ms: pred.mask (H, W) bool
    found = session.suggest(progress_cb=...)          # worker: candidate masks, best first
"""

from engine.sam.errors import (Cancelled, ChecksumError, DownloadError, SamError, SamWeightsInvalid,
                               SamWeightsMissing)
from engine.sam.models import ModelManager, default_cache_dir
from engine.sam.progress import CancelFlag, ProgressCallback, ProgressEvent
from engine.sam.session import Prediction, SamSession, Suggestion
from engine.sam.specs import SPECS, TINY, VIT_B, VIT_H, VIT_L, ModelSpec, get_spec, load_sam

__all__ = [
    "SPECS", "TINY", "VIT_B", "VIT_H", "VIT_L",
    "CancelFlag", "Cancelled", "ChecksumError", "DownloadError", "ModelManager", "ModelSpec", "Prediction",
    "ProgressCallback", "ProgressEvent", "SamError", "SamSession", "SamWeightsInvalid", "SamWeightsMissing",
    "Suggestion",
    "default_cache_dir", "get_spec", "load_sam",
]
