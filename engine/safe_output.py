"""Writing outputs without ever losing a file the program did not create.

The rules every ``bas`` command that writes follows (stated for users in ``docs/handle-pack.md``):

* a folder output is written into a new temporary sibling (``.NAME.partial-XXXX``) and renamed into
  place only once complete; on any failure the sibling is removed and the target is untouched;
* the target may be missing, empty, or hold only the ``checkpoints/`` of an interrupted run;
* a non-empty target that is not an output of the same kind (e.g. a handle pack) is refused;
* an existing output of the same kind is replaced only with ``force``, and never when it also holds
  files that are not part of it; the old one is renamed aside until the new one is in place;
* the checks that can fail (a file in the way, no permission, no space) run before any work starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

from engine.errors import BasError, OutputError, short_reason

State = Literal["new", "empty", "partial", "replace"]
Recogniser = Callable[[Path], "set[str] | None"]
CARRY = ("checkpoints",)  # kept from the old folder: the running break's own work files
MIN_FREE_BYTES = 16 << 20


@dataclass(frozen=True)
class OutputPlan:
    """What writing to ``path`` will do: create it, fill an empty folder, or replace an old output."""

    path: Path
    state: State

    @property
    def replaces(self) -> bool:
        """True when an existing output of the same kind will be replaced (``--force``)."""
        return self.state == "replace"


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(path: Path, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """``OutputError`` unless ``path`` (a file or folder to create) can be written: no file stands
    where a folder is needed, the nearest existing folder accepts new entries, and has some space."""
    anc = _existing_ancestor(path.parent)
    if not anc.is_dir():
        raise OutputError("is a file, not a folder; cannot write inside it", anc)
    try:
        probe = tempfile.mkdtemp(prefix=".bas-probe-", dir=anc)
        os.rmdir(probe)
    except OSError as e:
        raise OutputError(f"cannot write here ({e.strerror or e})", anc) from None
    with contextlib.suppress(OSError):
        if shutil.disk_usage(anc).free < min_free_bytes:
            raise OutputError(f"less than {min_free_bytes >> 20} MiB free on this disk", anc)


def check_output_folder(path: str | Path, force: bool, recognise: Recogniser, what: str,
                        min_free_bytes: int = MIN_FREE_BYTES) -> OutputPlan:
    """Decide whether ``path`` may receive a new ``what``; ``OutputError`` naming it if not.

    ``recognise(folder)`` returns the top-level names belonging to an existing ``what`` there, or
    ``None`` if the folder holds none.
    """
    path = Path(path)
    check_writable(path, min_free_bytes)
    if not path.exists():
        return OutputPlan(path, "new")
    if not path.is_dir():
        raise OutputError(f"exists and is a file, not a folder for the {what}; nothing was written", path)
    entries = {p.name for p in path.iterdir()}
    if not entries:
        return OutputPlan(path, "empty")
    if entries <= set(CARRY):
        return OutputPlan(path, "partial")
    owned = recognise(path)
    if owned is None:
        raise OutputError(f"the folder exists, is not empty and is not a {what}; choose a new or empty "
                          "folder (nothing was written)", path)
    foreign = sorted(entries - owned - set(CARRY))
    if foreign:
        raise OutputError(f"holds a {what} and also {', '.join(foreign[:3])}, which is not part of it; move "
                          "that out first (nothing was written)", path)
    if not force:
        raise OutputError(f"the target folder exists and is not empty: it holds a {what}; add --force to "
                          "replace it (the old one is kept until the new one is complete)", path)
    return OutputPlan(path, "replace")


def _free_sibling(target: Path, tag: str) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}-", dir=target.parent))
    tmp.rmdir()
    return tmp


def _swap_in(new: Path, target: Path) -> None:
    if not target.exists():
        os.replace(new, target)
        return
    old = _free_sibling(target, "old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)
        raise
    for name in CARRY:
        if (old / name).exists() and not (target / name).exists():
            os.replace(old / name, target / name)
    shutil.rmtree(old, ignore_errors=True)


def _rename_error(e: BasError, tmp: Path, target: Path) -> BasError:
    """The same error, naming the path under ``target`` instead of the temporary folder."""
    where = getattr(e, "path", None)
    reason = getattr(e, "reason", None)
    if where is None or reason is None:
        return e
    try:
        rel = Path(where).relative_to(tmp)
    except ValueError:
        return e
    return type(e)(reason, target / rel)


def write_folder(target: str | Path, writer: Callable[[Path], Path | None], force: bool,
                 recognise: Recogniser, what: str,
                 write_errors: Iterable[type[BaseException]] = ()) -> OutputPlan:
    """Write a folder through a temporary sibling; see the module doc for the rules.

    ``writer(tmp)`` fills the new empty folder ``tmp`` and may return a subfolder of it to use as
    the result instead. Errors from it name ``target``, never the temporary folder; the errors in
    ``write_errors`` (and ``OSError``) become ``OutputError``.
    """
    target = Path(target)
    plan = check_output_folder(target, force, recognise, what)
    failures: tuple[type[BaseException], ...] = (OSError, *write_errors)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        root = writer(tmp) or tmp
        _swap_in(root, target)
    except BasError as e:
        raise _rename_error(e, tmp, target) from None
    except failures as e:
        raise OutputError(f"could not write the {what} ({short_reason(e)}); nothing was changed",
                          target) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return plan


def check_output_files(paths: Iterable[Path], force: bool) -> None:
    """``OutputError`` if any of ``paths`` exists (unless ``force``) or cannot be written."""
    for p in paths:
        if p.is_dir():
            raise OutputError("is a folder; give a file name to write", p)
        if p.exists() and not force:
            raise OutputError("exists; add --force to overwrite it (nothing was written)", p)
        check_writable(p)


def write_file(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Write a file through a temporary sibling renamed over ``path`` only once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.partial-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"could not write ({e.strerror or e}); nothing was changed", path) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
