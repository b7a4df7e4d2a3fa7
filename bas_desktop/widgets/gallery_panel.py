"""The Gallery: compose prompts from handle chips, generate (streaming), variations, background, history.

Narrow interface: :meth:`GalleryPanel.set_project` takes the project's :class:`ProjectData` and
its handles; results land in the project's gallery folder and survive restarts.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QIcon, QPixmap
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QMenu, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from bas_desktop.model import jobs
from bas_desktop.widgets.error_dialog import show_error
from bas_desktop.widgets.chips import ChipBar, Handle, PromptEdit, render_prompt, unknown_tokens
from bas_desktop.model.gallery_store import GalleryEntry, GalleryStore
from bas_desktop.model.project_data import ProjectData
from bas_desktop.workers import JobMessage, JobRunner

THUMB = 112
NO_HANDLES = "Break the scene to get handles, then generate here."
NO_BACKGROUND = ("This project's handles have no background handle. Tick \"Background concept (everything "
                 "else)\" in the Concepts panel and break the scene again.")


class GalleryPanel(QWidget):
    """Prompt composer + parameters + streaming history. ``entryAdded(GalleryEntry)`` per new image."""

    entryAdded = Signal(object)
    busyChanged = Signal(bool)

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.data: ProjectData | None = None
        self.store: GalleryStore | None = None
        self.handles: list[Handle] = []
        self.device = "auto"
        self.busy = False
        self.last_error: str | None = None
        self._build()
        runner.message.connect(self._on_message)

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        self.chips = ChipBar()
        self.chips.clicked.connect(self._chip_clicked)
        lay.addWidget(self.chips)
        self.prompt = PromptEdit()
        self.prompt.textChanged.connect(self._prompt_changed)
        self.prompt.returnPressed.connect(self.generate)
        lay.addWidget(self.prompt)
        self.rendered = QLabel()
        self.rendered.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.rendered)

        row = QHBoxLayout()
        self.batch, self.seed, self.steps = QSpinBox(), QSpinBox(), QSpinBox()
        self.batch.setRange(1, 64)
        self.batch.setValue(4)
        self.seed.setRange(0, 2 ** 31 - 1)
        self.steps.setRange(1, 200)
        self.steps.setValue(30)
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setValue(7.5)
        self.lock_seed = QCheckBox("lock")
        self.lock_seed.setToolTip("Locked: image i uses seed + i every time. Unlocked: a new random seed per run.")
        for label, w in (("Batch", self.batch), ("Seed", self.seed), ("", self.lock_seed), ("Steps", self.steps),
                         ("Guidance", self.guidance)):
            if label:
                row.addWidget(QLabel(label))
            row.addWidget(w)
        row.addStretch(1)
        lay.addLayout(row)

        buttons = QHBoxLayout()
        self.generate_button = QPushButton("Generate")
        self.variations_button = QPushButton("Variations")
        self.variations_button.setToolTip("Every handle alone, every pair, all together, in a few contexts")
        self.background_button = QPushButton("Extract background")
        self.cancel_button = QPushButton("Cancel")
        self.generate_button.clicked.connect(self.generate)
        self.variations_button.clicked.connect(lambda: self.submit("variations"))
        self.background_button.clicked.connect(lambda: self.submit("background"))
        self.cancel_button.clicked.connect(lambda: self.runner.cancel("generate"))
        for b in (self.generate_button, self.variations_button, self.background_button, self.cancel_button):
            buttons.addWidget(b)
        lay.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("")
        lay.addWidget(self.progress)
        lay.addWidget(self.status)

        self.history = QListWidget()
        self.history.setViewMode(QListWidget.ViewMode.IconMode)
        self.history.setIconSize(QSize(THUMB, THUMB))
        self.history.setGridSize(QSize(THUMB + 16, THUMB + 34))
        self.history.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.history.setWordWrap(True)
        self.history.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.history.customContextMenuRequested.connect(self._context_menu)
        lay.addWidget(self.history, 1)
        actions = QHBoxLayout()
        self.rerun_button = QPushButton("Re-run")
        self.copy_seed_button = QPushButton("Copy seed")
        self.save_button = QPushButton("Save PNG...")
        self.delete_button = QPushButton("Delete")
        self.folder_button = QPushButton("Open folder")
        self.rerun_button.clicked.connect(lambda: self._with_selected(self.rerun))
        self.copy_seed_button.clicked.connect(lambda: self._with_selected(self.copy_seed))
        self.save_button.clicked.connect(lambda: self._with_selected(self._save_dialog))
        self.delete_button.clicked.connect(lambda: self._with_selected(self.delete))
        self.folder_button.clicked.connect(self.open_folder)
        for b in (self.rerun_button, self.copy_seed_button, self.save_button, self.delete_button, self.folder_button):
            actions.addWidget(b)
        lay.addLayout(actions)
        self._update_buttons()

    # ----- project -----------------------------------------------------------------------------
    def set_project(self, data: ProjectData | None, handles: list[Handle], device: str = "auto") -> None:
        """Show this project's gallery and handles."""
        self.data, self.handles, self.device = data, handles, device
        self.chips.set_handles(handles)
        self.history.clear()
        self.store = GalleryStore(data.gallery_dir).load() if data is not None else None
        if self.store is not None:
            for e in self.store.entries:
                self._add_item(e)
            if self.store.problem:
                self.status.setText(self.store.problem)
        self._prompt_changed(self.prompt.text())
        self._update_buttons()

    def set_handles(self, handles: list[Handle]) -> None:
        """New handles (after a break)."""
        self.handles = handles
        self.chips.set_handles(handles)
        self._prompt_changed(self.prompt.text())
        self._update_buttons()

    def _has_background(self) -> bool:
        try:
            manifest = json.loads((self.data.pack_dir / "pack.json").read_text(encoding="utf-8"))  # type: ignore[union-attr]
            return any(c.get("is_background") for c in manifest.get("concepts", []))
        except (OSError, ValueError, AttributeError):
            return True  # let the job report what is wrong with the pack

    def _ready(self) -> bool:
        return self.data is not None and self.data.has_pack()

    def _update_buttons(self) -> None:
        ok = self._ready() and not self.busy
        for b in (self.generate_button, self.variations_button, self.background_button):
            b.setEnabled(ok)
        self.cancel_button.setEnabled(self.busy)
        if not self._ready():
            self.status.setText(NO_HANDLES)
        elif self.status.text() == NO_HANDLES:
            self.status.setText("Ready: click or drag a handle chip into the prompt, then Generate.")

    # ----- composing ---------------------------------------------------------------------------
    def _chip_clicked(self, token: str) -> None:
        self.prompt.insert_token(token)
        self.prompt.setFocus()

    def _prompt_changed(self, text: str) -> None:
        self.rendered.setText(render_prompt(text, self.handles) if text else "")
        bad = unknown_tokens(text, self.handles)
        self.rendered.setToolTip(f"unknown handles: {', '.join(bad)}" if bad else "")

    def _seeds(self, n: int) -> list[int]:
        if not self.lock_seed.isChecked():
            self.seed.setValue(random.randrange(0, 2 ** 31 - 1))
        return [self.seed.value() + i for i in range(n)]

    def generate(self) -> None:
        """Generate a batch for the prompt."""
        bad = unknown_tokens(self.prompt.text(), self.handles)
        if bad:
            self._error("Unknown handle", f"the prompt names {', '.join(bad)}, which this project has no handle for")
            return
        self.submit("prompt")

    def submit(self, mode: str, prompt: str | None = None, seeds: list[int] | None = None) -> None:
        """Queue a generation job (``prompt``, ``variations`` or ``background``)."""
        if not self._ready() or self.busy or self.data is None:
            return
        if mode == "background" and not self._has_background():
            self._error("No background handle", NO_BACKGROUND)
            return
        n = self.batch.value() if mode != "variations" else 1
        inputs = jobs.GenerateInputs(self.data.pack_dir, self.data.gallery_dir, (prompt or self.prompt.text()).strip(), n,
                                     seeds or self._seeds(n), self.steps.value(), self.guidance.value(), mode,
                                     device=self.device)
        self.busy = True
        self.busyChanged.emit(True)
        self.progress.setValue(0)
        loaded = jobs.pack_model_loaded(self.data.pack_dir, self.device)
        self.status.setText(f"Starting {mode} ..." if loaded else "Loading the model ...")
        self._update_buttons()
        self.runner.submit("generate", jobs.generate_job, inputs)

    # ----- results -----------------------------------------------------------------------------
    def _on_message(self, msg: JobMessage) -> None:
        if msg.job not in ("generate", "edit"):
            return
        if msg.kind == "progress":
            if msg.job == "generate":
                if msg.fraction is not None:
                    self.progress.setValue(int(1000 * msg.fraction))
                self.status.setText(msg.text)
            entry = msg.result.entry if isinstance(msg.result, jobs.EditCandidate) else msg.result
            if isinstance(entry, GalleryEntry):
                self.add_entry(entry)
            return
        if msg.job != "generate":
            return
        self.busy = False
        self.busyChanged.emit(False)
        self._update_buttons()
        if msg.kind == "error":
            self._error("Generation failed", msg.text, msg.details)
        else:
            self.status.setText("Done" if msg.kind == "done" else "Cancelled")

    def add_entry(self, entry: GalleryEntry) -> None:
        """Record a finished image (its PNG is already in the gallery folder) and show it first."""
        if self.store is None:
            return
        self.store.add(entry)
        self._add_item(entry)
        self.entryAdded.emit(entry)

    def _add_item(self, entry: GalleryEntry) -> None:
        assert self.store is not None
        pm = QPixmap(str(self.store.path(entry)))
        if not pm.isNull() and max(pm.width(), pm.height()) < THUMB:  # small models: scale up, keep pixels sharp
            pm = pm.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        item = QListWidgetItem(QIcon(pm), entry.label or entry.prompt[:40])
        item.setData(Qt.ItemDataRole.UserRole, entry)
        item.setToolTip(f"{entry.prompt}\nseed {entry.seed} · {entry.steps} steps · guidance {entry.guidance} · "
                        f"{entry.scheduler} · {entry.kind}")
        self.history.insertItem(0, item)

    def selected(self) -> GalleryEntry | None:
        """The entry selected in the history (or None)."""
        item = self.history.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _with_selected(self, fn) -> None:  # type: ignore[no-untyped-def]
        entry = self.selected()
        if entry is not None:
            fn(entry)

    # ----- history actions ---------------------------------------------------------------------
    def rerun(self, entry: GalleryEntry) -> None:
        """Generate the entry again with its prompt, seed and parameters."""
        self.prompt.setText(entry.prompt)
        self.steps.setValue(entry.steps)
        self.guidance.setValue(entry.guidance)
        self.seed.setValue(entry.seed)
        self.submit("prompt", prompt=entry.prompt, seeds=[entry.seed])

    def copy_seed(self, entry: GalleryEntry) -> None:
        """Put the seed on the clipboard and into the seed box (locked)."""
        QGuiApplication.clipboard().setText(str(entry.seed))
        self.seed.setValue(entry.seed)
        self.lock_seed.setChecked(True)

    def delete(self, entry: GalleryEntry) -> None:
        """Remove an entry and its file."""
        if self.store is None:
            return
        self.store.delete(entry)
        for i in range(self.history.count()):
            if self.history.item(i).data(Qt.ItemDataRole.UserRole).file == entry.file:
                self.history.takeItem(i)
                break

    def save_as(self, entry: GalleryEntry, path: str | Path) -> Path:
        """Copy the PNG (it carries A1111 ``parameters`` and exact JSON metadata) to ``path``."""
        assert self.store is not None
        dest = Path(path)
        if dest.suffix.lower() != ".png":
            dest = dest.with_suffix(".png")
        shutil.copyfile(self.store.path(entry), dest)
        return dest

    def _save_dialog(self, entry: GalleryEntry) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save image", entry.file, "PNG images (*.png)")
        if path:
            try:
                self.save_as(entry, path)
            except OSError as e:
                self._error("Could not save", f"{path}: {e}")

    def open_folder(self) -> None:
        """Show the gallery folder in the file manager."""
        if self.data is not None:
            self.data.gallery_dir.mkdir(parents=True, exist_ok=True)
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.data.gallery_dir)))

    def _context_menu(self, pos) -> None:  # type: ignore[no-untyped-def]
        entry = self.selected()
        if entry is None:
            return
        menu = QMenu(self)
        menu.addAction("Re-run", lambda: self.rerun(entry))
        menu.addAction("Copy seed", lambda: self.copy_seed(entry))
        menu.addAction("Save as PNG...", lambda: self._save_dialog(entry))
        menu.addAction("Open folder", self.open_folder)
        menu.addSeparator()
        menu.addAction("Delete", lambda: self.delete(entry))
        menu.popup(self.history.viewport().mapToGlobal(pos))

    def _error(self, title: str, text: str, details: str = "") -> None:
        self.last_error = text
        self.status.setText(f"Error: {text}")
        show_error(self, title, text, details)
