"""First run without weights: what is installed, the offered models' sizes, a cancellable download.

Plain functions (no Qt); the dialog in ``bas_desktop/widgets/model_dialog.py`` runs them as jobs.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from engine.jobs.events import JobMessage, MessageKind, Report, StopCheck
from engine.formats.names import DEFAULT_HUB_MODEL, HUB_MODELS, download_patterns, offline_model_available

PATTERNS = download_patterns(DEFAULT_HUB_MODEL)


@dataclass
class ModelStatus:
    """What the app can use right now."""

    default_installed: bool
    offline_installed: bool

    @property
    def needs_setup(self) -> bool:
        """True when no real base model is on disk (the first-run dialog should be offered)."""
        return not self.default_installed


def model_status(hub_id: str | None = None) -> ModelStatus:
    """Look in the local hub cache only (no network). ``default_installed``: ``hub_id``, or with
    None any offered model (SD 2.1, SDXL), is there."""
    ids = [hub_id] if hub_id else [m.hub_id for m in HUB_MODELS]
    return ModelStatus(any(_cached(i) for i in ids), offline_model_available())


def _cached(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hub_id, "model_index.json"), str)
    except Exception:  # noqa: BLE001 - a broken cache is "not installed"
        return False


@dataclass
class RemoteFile:
    """One file of the hub repo that the download fetches."""

    name: str
    size: int


def remote_files(hub_id: str = DEFAULT_HUB_MODEL) -> list[RemoteFile]:
    """The diffusers-layout files of a hub model and their sizes (needs network)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(hub_id, files_metadata=True)
    patterns = download_patterns(hub_id)
    out = []
    for s in info.siblings or []:
        if any(fnmatch.fnmatch(s.rfilename, p) for p in patterns) and s.rfilename.count("/") <= 1:
            out.append(RemoteFile(s.rfilename, int(s.size or 0)))
    return out


def format_size(n: int) -> str:
    """``5.2 GB`` style."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


@dataclass
class DownloadInputs:
    """Which hub model to fetch."""

    hub_id: str = DEFAULT_HUB_MODEL


def download_job(inputs: DownloadInputs, report: Report, should_stop: StopCheck) -> Path | None:
    """Fetch file by file into the hub cache; partial files resume, cancel stops between files.

    Returns the snapshot folder, or None when cancelled.
    """
    from huggingface_hub import hf_hub_download


    files = remote_files(inputs.hub_id)
    total = sum(f.size for f in files) or 1
    done = 0
    folder: Path | None = None
    for f in files:
        if should_stop():
            return None
        report(JobMessage("download", MessageKind.PROGRESS, f"{f.name} ({format_size(done)} of {format_size(total)})",
                          done / total))
        path = Path(hf_hub_download(inputs.hub_id, f.name))
        done += f.size
        if f.name == "model_index.json":
            folder = path.parent
    report(JobMessage("download", MessageKind.PROGRESS, f"{format_size(total)} downloaded", 1.0))
    return folder


def check_local_model(path: str) -> str:
    """Validate a local diffusers folder or single checkpoint; returns the reference to use."""
    from engine.errors import ModelNotFoundError
    from engine.models import resolve_model

    kind, _ = resolve_model(path)
    if kind not in ("folder", "single_file"):
        raise ModelNotFoundError(f"{path}: not a diffusers model folder or a .safetensors/.ckpt file")
    return str(Path(path).expanduser())
