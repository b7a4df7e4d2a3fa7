"""Error types of the Segment Anything engine; every message names the file or model and the problem."""

from __future__ import annotations

from pathlib import Path

from engine.errors import BasError, ModelLoadError, ModelNotFoundError


class SamError(BasError):
    """Anything the SAM engine refuses on purpose: bad image, bad prompt, unusable weights file."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class DownloadError(SamError):
    """A weights download failed (network, HTTP status); a partial ``.part`` file may be kept for resume."""


class ChecksumError(DownloadError):
    """A downloaded or picked weights file does not have the published SHA-256."""


class Cancelled(SamError):
    """The caller's cancel flag was set; whatever was half done is kept only where it can be resumed."""


class SamWeightsMissing(SamError, ModelNotFoundError):
    """No weights file for the requested SAM model on this machine; download it or pick one."""


class SamWeightsInvalid(SamError, ModelLoadError):
    """A SAM weights file exists but is unreadable, unsafe or not the expected architecture."""
