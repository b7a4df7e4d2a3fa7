"""The Break panel: choose a preset and a device, see the estimate, train, watch, cancel, resume.

Narrow interface: :meth:`BreakPanel.set_project` takes the open :class:`Document`, its
:class:`ProjectData` folder and a model id; the panel submits :func:`bas_desktop.model.jobs.train_job`
to a shared :class:`JobRunner` and never blocks the UI thread.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QFrame, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSpinBox, QVBoxLayout,
                               QWidget)

from bas_desktop.model import jobs
from bas_desktop.widgets.charts import AttentionTile, LossChart
from bas_desktop.model.document import Document
from bas_desktop.widgets.error_dialog import show_error
from bas_desktop.widgets.layout import reserved_box
from bas_desktop.model.model_info import describe_model, recommended_preset
from bas_desktop.model.project_data import ProjectData
from bas_desktop.workers import JobMessage, JobRunner

DEVICES = ("auto", "cuda", "mps", "cpu")


def fmt_seconds(s: float | None) -> str:
    """``1:05`` / ``1:02:03``; ``-`` when unknown."""
    if s is None:
        return "-"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


class BreakPanel(QWidget):
    """Training controls and live feedback. Signals: ``finished(Path)`` (the pack), ``event(TrainEvent)``."""

    finished = Signal(object)
    event = Signal(object)
    stateChanged = Signal(str)  # idle | estimating | training | cancelling
    modelRequested = Signal()  # the user wants to choose another base model

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.doc: Document | None = None
        self.data: ProjectData | None = None
        self.model = ""
        self.state = "idle"
        self.events: list[Any] = []
        self.last_error: str | None = None
        self.estimate: Any = None
        self._estimate_key: tuple | None = None
        self.tiles: dict[str, AttentionTile] = {}
        self._overrides: dict[str, Any] = {}
        self.preview_steps = 20  # denoising steps of each handle's preview after training
        self._build()
        runner.message.connect(self._on_message)

    # ----- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        self.resume_bar = QFrame()
        self.resume_bar.setStyleSheet("QFrame{background:#fff4d6;border:1px solid #e0c060;border-radius:3px}")
        rb = QHBoxLayout(self.resume_bar)
        self.resume_text = QLabel()
        self.resume_text.setWordWrap(True)
        self.resume_text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the dock
        self.resume_button, self.discard_button = QPushButton("Resume"), QPushButton("Discard")
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.discard_button.clicked.connect(self.discard_checkpoint)
        rb.addWidget(self.resume_text, 1)
        rb.addWidget(self.resume_button)
        rb.addWidget(self.discard_button)
        self.resume_bar.hide()
        lay.addWidget(self.resume_bar)

        form = QFormLayout()
        model_row = QHBoxLayout()
        self.model_label = QLabel()
        self.model_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.model_button = QPushButton("Change…")
        self.model_button.setToolTip("Choose the base model (Handles > Base model)")
        self.model_button.clicked.connect(lambda: self.modelRequested.emit())
        model_row.addWidget(self.model_label, 1)
        model_row.addWidget(self.model_button)
        form.addRow("Base model", model_row)
        self.preset = QComboBox()
        self.preset.addItems(list(jobs.PRESET_NAMES))
        self.preset.setToolTip("Quick: 20+20 steps, no prior images. Paper: 400+400 with prior preservation. "
                               "ShapesWorld: 100+100 steps at the learning rates the offline model needs. "
                               "Low VRAM: LoRA phase 2, 8-bit Adam, gradient checkpointing. "
                               "The model's recommended preset is chosen when the model changes.")
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.every = QSpinBox()
        self.every.setRange(1, 1000)
        self.every.setValue(5)
        self.every.setSuffix(" steps")
        self.views = QSpinBox()
        self.views.setRange(1, 16)
        self.views.setValue(1)
        self.views.setToolTip("Views of the photo per training step, each with its own concepts, flip, noise and "
                              "timestep. 1 is the paper's; 4 lowers the spread between runs (on ShapesWorld two "
                              "handles compose in a new context about twice as often) at about twice the time")
        run_on = QHBoxLayout()
        self.run_on = QComboBox()
        self.run_on.addItems(["This computer", "Ray cluster"])
        self.run_on.setToolTip("Ray cluster: the break runs as a Ray task (pip install '.[cluster]'); progress, "
                               "heat maps and cancel work as here, and the pack comes back when it is done")
        self.address = QLineEdit()
        self.address.setPlaceholderText("ray://host:10001, auto, or empty for Ray on this computer")
        self.address.setToolTip("The Ray cluster's address (docs/cluster.md: ray start --head on the GPU machine; "
                                "for ray:// start the app with RAY_AUTH_MODE=token and the cluster's token)")
        self.device.setToolTip("The device the break trains on (auto: a GPU when there is one)")
        run_on.addWidget(self.run_on, 1)
        run_on.addWidget(self.device, 1)
        form.addRow("Preset", self.preset)
        form.addRow("Run on", run_on)
        form.addRow("Cluster", self.address)  # shown only when the break runs on a Ray cluster
        form.setRowVisible(self.address, False)
        self.run_on.currentIndexChanged.connect(lambda i: form.setRowVisible(self.address, i == 1))
        form.addRow("Views per step", self.views)
        form.addRow("Heat maps every", self.every)
        lay.addLayout(form)
        self.device_note = QLabel("Checking devices ...")
        self.device_note.setWordWrap(True)
        self.device_note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay.addWidget(self.device_note)
        self.estimate_label = QLabel("Estimate: not measured yet")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay.addWidget(self.estimate_label)
        self.estimate_first = QCheckBox("Measure time and memory before starting")
        self.estimate_first.setChecked(True)
        lay.addWidget(self.estimate_first)
        self.full_weights = QCheckBox("Keep full weights")
        self.full_weights.setToolTip("A full fine-tune is stored as a LoRA extracted from the weight change "
                                     "(default; SD 2.1: at most 190 MB), or with every tuned tensor (2.4 GB)")
        lay.addWidget(self.full_weights)

        buttons = QHBoxLayout()
        self.estimate_button = QPushButton("Estimate")
        self.break_button = QPushButton("Break scene")
        self.break_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.estimate_button.clicked.connect(self.run_estimate)
        self.break_button.clicked.connect(self.on_break)
        self.cancel_button.clicked.connect(self.cancel)
        for b in (self.estimate_button, self.break_button, self.cancel_button):
            buttons.addWidget(b)
        lay.addLayout(buttons)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("Idle")
        self.status.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        lay.addWidget(self.progress)
        lay.addWidget(reserved_box(self.status, lines=2))  # a long error scrolls here, the layout stays put
        self.chart = LossChart()
        lay.addWidget(self.chart, 1)
        self.tiles_box = QWidget()
        self.tiles_grid = QGridLayout(self.tiles_box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.tiles_box)
        scroll.setMinimumHeight(130)
        lay.addWidget(scroll, 1)
        for w in (self.preset, self.device):
            w.currentTextChanged.connect(self._settings_changed)
        self.views.valueChanged.connect(self._settings_changed)
        self.preset.currentTextChanged.connect(self._preset_views)

    # ----- project -----------------------------------------------------------------------------
    def set_project(self, doc: Document | None, data: ProjectData | None, model: str) -> None:
        """Show this project; offers to resume when it holds an unfinished break."""
        if model != self.model:
            self.set_model(model)
        self.doc, self.data = doc, data
        self._estimate_key = None
        self._settings_changed()
        self._build_tiles()
        self._update_resume_bar()
        if not self.runner.busy("devices"):
            self.runner.submit("devices", jobs.devices_job, None)

    def set_model(self, model: str) -> None:
        """Show ``model`` as the base model and select the preset it recommends (Quick when none)."""
        self.model = model
        self.model_label.setText(describe_model(model))
        self.model_label.setToolTip(f"{describe_model(model, long=True)}\n{model}")
        name = recommended_preset(model) or "quick"
        self.preset.setCurrentText(jobs.preset_label(name))
        self._settings_changed()

    def _update_resume_bar(self) -> None:
        run = self.data.read_run() if self.data is not None and self.data.has_checkpoint() else None
        if run is None or self.state != "idle":
            self.resume_bar.hide()
            return
        cfg = run.get("config", {})
        self.resume_text.setText(f"An unfinished break ({run.get('preset', '?')}, "
                                 f"{cfg.get('phase1_steps', '?')}+{cfg.get('phase2_steps', '?')} steps, "
                                 f"model {run.get('model', '?')}) can be resumed from its last checkpoint.")
        self.resume_bar.show()

    def can_resume(self) -> bool:
        """True when the project holds a checkpoint the panel offers to resume."""
        return self.data is not None and self.data.has_checkpoint()

    def discard_checkpoint(self) -> None:
        """Forget the unfinished run."""
        if self.data is not None:
            self.data.clear_run()
        self._update_resume_bar()

    def _build_tiles(self) -> None:
        for t in self.tiles.values():
            t.setParent(None)
        self.tiles = {}
        if self.doc is None:
            return
        scene = self.doc.to_scene()
        for i, c in enumerate(scene.concepts):
            small = c.binary()[:: max(1, c.mask.shape[0] // 64), :: max(1, c.mask.shape[1] // 64)]
            tile = AttentionTile(c.token, tuple(c.color), small.astype(np.float32))
            self.tiles[c.token] = tile
            self.tiles_grid.addWidget(tile, i, 0)  # one column: two side by side overflow a 1366 px layout

    # ----- settings and estimate ---------------------------------------------------------------
    def set_overrides(self, **kw: Any) -> None:
        """Config overrides on top of the preset (tests use tiny step counts)."""
        self._overrides = kw
        self._settings_changed()

    def _preset_views(self, label: str) -> None:
        """A preset brings its own views per step (the user can change it after)."""
        from engine.training.config import PRESETS

        self.views.setValue(int(PRESETS.get(jobs.PRESET_NAMES.get(label, label), {}).get("views_per_step", 1)))

    def config(self) -> Any:
        """The engine config of the current choices."""
        cfg = jobs.make_config(self.preset.currentText(), self.device.currentText(),
                               **{"views_per_step": self.views.value(), **self._overrides})
        return replace(cfg, preview_every=self.every.value())

    def _key(self) -> tuple:
        return (self.preset.currentText(), self.device.currentText(), self.views.value(), self.model,
                tuple(sorted(self._overrides.items())),
                self.doc.revision if self.doc is not None else -1)

    def _settings_changed(self, *_: object) -> None:
        if self._estimate_key != self._key():
            self.estimate = None
            self.estimate_label.setText("Estimate: not measured yet for these settings")
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.state != "idle"
        ready = self.doc is not None and self.data is not None and bool(self.doc.layers)
        self.estimate_button.setEnabled(ready and not busy)
        self.break_button.setEnabled(ready and not busy)
        self.cancel_button.setEnabled(self.state in ("training", "estimating"))
        self.preset.setEnabled(not busy)
        self.model_button.setEnabled(not busy)
        self.device.setEnabled(not busy)
        self.run_on.setEnabled(not busy)
        self.address.setEnabled(not busy)
        if self.estimate is not None and self._estimate_key == self._key():
            self.break_button.setText(f"Start break ({fmt_seconds(self.estimate.total_s)})")
        else:
            self.break_button.setText("Break scene")

    def _scene(self) -> Any:
        assert self.doc is not None
        problems = [p for p in self.doc.problems() if "empty" in p or "whole photo" in p or "no concepts" in p]
        if problems:
            raise ValueError("; ".join(problems))
        return self.doc.to_scene()

    def _set_state(self, state: str) -> None:
        self.state = state
        self._update_buttons()
        self.stateChanged.emit(state)

    def run_estimate(self) -> None:
        """Measure a few steps off the UI thread and show time and memory."""
        try:
            scene = self._scene()
        except ValueError as e:
            self._error("Cannot estimate", str(e))
            return
        self._set_state("estimating")
        self.estimate_label.setText("Estimate: measuring a few steps ...")
        self._pending_key = self._key()
        self.runner.submit("estimate", jobs.estimate_job, jobs.EstimateInputs(scene, self.config(), self.model))

    def on_break(self) -> None:
        """The Break button: estimate first (when asked and not done), else start."""
        local = self.cluster() is None  # the estimate measures this computer, not the cluster
        if local and self.estimate_first.isChecked() and (self.estimate is None or self._estimate_key != self._key()):
            self.run_estimate()
            return
        self.start()

    # ----- training ----------------------------------------------------------------------------
    def start(self, resume: bool = False) -> None:
        """Start (or resume) the break in the worker thread."""
        if self.doc is None or self.data is None or self.state != "idle":
            return
        try:
            scene = self._scene()
        except ValueError as e:
            self._error("Cannot break this scene", str(e))
            return
        cfg, preset = self.config(), self.preset.currentText()
        model = self.model
        if resume:
            run = self.data.read_run() or {}
            from engine.training.config import TrainConfig

            cfg = replace(TrainConfig.from_dict(run.get("config", {})), device=self.device.currentText(),
                          preview_every=self.every.value())
            preset, model = run.get("preset", preset), run.get("model", model)
        self.events = []
        self.chart.clear(cfg.total_steps, cfg.phase1_steps)
        self._build_tiles()
        self.resume_bar.hide()
        self._set_state("training")
        self.status.setText("Resuming ..." if resume else "Starting ...")
        self.runner.submit("train", jobs.train_job, jobs.TrainInputs(scene, cfg, model, self.data, resume, preset,
                                                                  self.preview_steps, self.cluster(),
                                                                  self.full_weights.isChecked()))

    def cluster(self) -> str | None:
        """Where the break runs: None for this computer, else the Ray address ("" starts Ray here)."""
        return self.address.text().strip() if self.run_on.currentIndex() == 1 else None

    def set_cluster(self, use: bool, address: str) -> None:
        """Choose this computer or the Ray cluster at ``address``."""
        self.address.setText(address)
        self.run_on.setCurrentIndex(1 if use else 0)

    def cancel(self) -> None:
        """Stop at the next step; the trainer writes a checkpoint first."""
        if self.state == "training":
            self._set_state("cancelling")
            self.status.setText("Cancelling: writing a checkpoint ...")
            self.runner.cancel("train")
        elif self.state == "estimating":
            self.runner.cancel("estimate")

    # ----- messages ----------------------------------------------------------------------------
    def _error(self, title: str, text: str, details: str = "") -> None:
        self.last_error = text
        self.status.setText(f"Error: {text}")
        show_error(self, title, text, details)

    def _on_message(self, msg: JobMessage) -> None:
        if msg.job == "devices" and msg.kind == "done":
            info = msg.result
            self.device_note.setText(info.message)
            self.device_note.setStyleSheet("color:#a60" if info.available == ["cpu"] else "")
            model = self.device.model()
            for i, name in enumerate(DEVICES):
                item = model.item(i)  # type: ignore[attr-defined]
                item.setEnabled(name == "auto" or name in info.available)
        elif msg.job == "estimate":
            self._on_estimate(msg)
        elif msg.job == "train":
            self._on_train(msg)

    def _on_estimate(self, msg: JobMessage) -> None:
        if msg.kind == "progress":
            self.status.setText(msg.text)
            return
        self._set_state("idle")
        if msg.kind == "done":
            self.estimate, self._estimate_key = msg.result, self._pending_key
            self.estimate_label.setText("Estimate: " + jobs.format_estimate(msg.result))
            self.status.setText("Estimate ready: press Start to commit")
        elif msg.kind == "error":
            self.estimate_label.setText("Estimate failed")
            self._error("Estimate failed", msg.text, msg.details)
        else:
            self.estimate_label.setText("Estimate cancelled")
        self._update_buttons()

    def _on_train(self, msg: JobMessage) -> None:
        if msg.kind == "progress":
            payload = msg.result
            if isinstance(payload, jobs.PreviewImage):
                if payload.token in self.tiles:
                    self.tiles[payload.token].set_preview(payload.image)
                return
            if isinstance(payload, jobs.LossHistory):
                for step, losses in payload.points:
                    self.chart.add(step, losses)
                return
            if payload is None:
                return
            self.events.append(payload)
            self.event.emit(payload)
            self._on_event(payload)
            return
        outcome = msg.result
        self._set_state("idle")
        if msg.kind == "done" and outcome is not None and outcome.pack_dir is not None:
            self.progress.setValue(1000)
            self.status.setText(f"Done in {fmt_seconds(outcome.seconds)}: handles ready for the gallery")
            self.finished.emit(Path(outcome.pack_dir))
        elif msg.kind in ("cancelled", "done"):
            steps = [e.global_step for e in self.events if e.kind == "step"]
            step = outcome.cancelled_at if outcome is not None else (steps[-1] if steps else None)
            self.status.setText(f"Cancelled after step {step}; the last checkpoint is kept, resume any time"
                                if step is not None else "Cancelled")
        else:
            self._error("Training failed", msg.text, msg.details)
        self._update_resume_bar()

    def _on_event(self, e: Any) -> None:
        if e.kind == "step":
            self.progress.setValue(int(1000 * e.global_step / max(1, e.global_total)))
            self.status.setText(f"Phase {e.phase} · step {e.step}/{e.total} · "
                                f"{e.global_step}/{e.global_total} overall · ETA {fmt_seconds(e.eta)}")
            self.chart.add(e.global_step, e.losses)
        elif e.kind == "preview" and e.attention:
            for tok, heat in e.attention.items():
                if tok in self.tiles:
                    self.tiles[tok].set_attention(heat, (e.overlap or {}).get(tok, 0.0))
        elif e.kind == "status":
            self.status.setText(e.message)
