"""What an import brings and how it lands: a pack folder, a pack archive, an exported interop folder
or textual-inversion files, replacing the project's handles or added to them.

Qt-free. :func:`inspect_source` reads JSON and file names only (fast, on the UI thread, to show the
user what they chose); :func:`import_job` does the work in a worker thread.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from engine.jobs.events import Report, StopCheck

EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")
LORA_FILE = "pytorch_lora_weights.safetensors"  # engine.packs.interop.LORA_FILE (no torch here)
INTEROP_FOLDERS = ("diffusers", "a1111")


@dataclass
class ImportPlan:
    """What the chosen paths are: ``kind`` is ``pack``, ``archive`` or ``embeddings``."""

    kind: str
    paths: list[Path]
    summary: str
    notes: list[str] = field(default_factory=list)


def _pack_summary(folder: Path) -> str:
    try:
        manifest = json.loads((folder / "pack.json").read_text(encoding="utf-8"))
        concepts = manifest.get("concepts") or []
        names = ", ".join(f"{c.get('token')} {c.get('init_word') or ''}".strip() for c in concepts)
        return f"handle pack {folder.name} with {len(concepts)} handles ({names})"
    except (OSError, ValueError, AttributeError):
        return f"handle pack {folder.name}"


def _embedding_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EMBEDDING_SUFFIXES and p.name != LORA_FILE)


def inspect_source(paths: list[Path]) -> ImportPlan:
    """Classify the user's choice; raises ``ValueError`` saying what an import takes."""
    from engine.packs.archive import is_archive

    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("nothing chosen to import")
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        if (folder / "pack.json").is_file():
            return ImportPlan("pack", [folder], _pack_summary(folder))
        if (folder / "pack" / "pack.json").is_file():  # an export folder holding our own format
            return ImportPlan("pack", [folder / "pack"], _pack_summary(folder / "pack"))
        for sub in (folder, *(folder / name for name in INTEROP_FOLDERS)):
            files = _embedding_files(sub) if sub.is_dir() else []
            if files:
                notes = []
                if (sub / LORA_FILE).is_file() or (folder / "diffusers" / LORA_FILE).is_file():
                    notes.append("the folder's LoRA is not imported: the handles come without their "
                                 "phase-2 weights, so they resemble the objects less than in the original pack")
                return ImportPlan("embeddings", files, f"{len(files)} textual-inversion files from {sub}", notes)
        raise ValueError(f"{folder}: no pack.json, no pack/ folder and no embedding files; choose a handle "
                         "pack folder, a pack archive, an exported folder or embedding files")
    if len(paths) == 1 and is_archive(paths[0]):
        return ImportPlan("archive", paths, f"pack archive {paths[0].name}")
    bad = [p for p in paths if p.suffix.lower() not in EMBEDDING_SUFFIXES or not p.is_file()]
    if bad:
        raise ValueError(f"{bad[0]}: not a pack folder, a pack archive (.zip, .tar, .tar.gz) or an embedding "
                         "file (.safetensors, .pt, .bin)")
    return ImportPlan("embeddings", paths, f"{len(paths)} textual-inversion file(s)")


@dataclass
class ImportInputs:
    """Import ``plan`` into the project's pack folder ``dest``: ``mode`` is ``replace`` or ``add``."""

    plan: ImportPlan
    dest: Path
    base_model: str = "tiny-random"
    mode: str = "replace"


@dataclass
class ImportOutcome:
    """What landed: the pack folder and the tokens that came in (renamed ones under their new names)."""

    pack_dir: Path
    added: list[str]
    total: int
    notes: list[str]

    def describe(self) -> str:
        """One line for the user."""
        text = f"Imported {len(self.added)} handle(s): {', '.join(self.added)}; the project now has {self.total}"
        return text + (". Note: " + "; ".join(self.notes) if self.notes else "")


def _as_pack(plan: ImportPlan, base_model: str, out: Path) -> None:
    from engine.packs.archive import extract_pack_archive, import_pack_folder

    if plan.kind == "pack":
        import_pack_folder(plan.paths[0], out)
    elif plan.kind == "archive":
        extract_pack_archive(plan.paths[0], out)
    else:
        from engine.packs.interop import import_embeddings

        import_embeddings(list(plan.paths), base_model, out)


def _merge(current: Path, incoming: Path, out: Path) -> list[str]:
    """``current`` plus ``incoming``'s handles (renamed to free ``<assetN>`` tokens when taken) into ``out``."""
    from safetensors.torch import load_file, save_file

    from engine.errors import PackError
    from engine.packs.pack import load_pack

    shutil.copytree(current, out)
    manifest = json.loads((out / "pack.json").read_text(encoding="utf-8"))
    emb_file = out / manifest["files"]["embeddings"]
    have = load_file(str(emb_file))
    width = next(iter(have.values())).shape[-1] if have else None
    new = load_pack(incoming)
    taken, added = set(have), []
    n = len(manifest["concepts"])
    for concept in new.concepts:
        vec = new.embeddings[concept["token"]]
        if width is not None and vec.shape[-1] != width:
            raise PackError(f"handle {concept['token']} has width {vec.shape[-1]} but this project's handles have "
                            f"{width} (made for another model family?)", incoming)
        token = concept["token"]
        while token in taken:
            token, n = f"<asset{n}>", n + 1
        taken.add(token)
        have[token] = vec.float().contiguous()
        manifest["concepts"].append({**concept, "token": token})
        added.append(token)
    save_file(have, str(emb_file))
    (out / "pack.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    load_pack(out)
    return added


def _swap_in(new: Path, dest: Path) -> None:
    """Replace folder ``dest`` by ``new``; the old one is removed only after the new one is in place."""
    old = dest.with_name(dest.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    if old.exists():
        shutil.rmtree(old)


def import_job(inputs: ImportInputs, report: Report, should_stop: StopCheck) -> ImportOutcome:
    """Validate and land the import; the project's pack is replaced only once the new one loads."""
    from bas_desktop.model.jobs import _PACK_MODELS
    from engine.packs.pack import load_pack

    dest = inputs.dest
    staging = dest.with_name(dest.name + ".incoming")
    merged = dest.with_name(dest.name + ".import")
    for tmp in (staging, merged):
        if tmp.exists():
            shutil.rmtree(tmp)
    try:
        _as_pack(inputs.plan, inputs.base_model, staging)
        notes = list(inputs.plan.notes)
        if inputs.mode == "add" and (dest / "pack.json").is_file():
            added = _merge(dest, staging, merged)
            notes.append("the added handles have no phase-2 weights of their own in this pack")
        else:
            shutil.copytree(staging, merged)
            added = load_pack(merged).tokens
        total = len(load_pack(merged).tokens)
        _swap_in(merged, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(merged, ignore_errors=True)
    _PACK_MODELS.clear()
    return ImportOutcome(dest, added, total, notes)
