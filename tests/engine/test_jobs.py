"""The job layer: the local thread runner (lanes, one final message per job, cancel) and run_break."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine.errors import BasError, OutputError
from engine.example import make_example_scene
from engine.formats.manifest import read_manifest
from engine.formats.names import CHECKPOINT_NAME
from engine.jobs.breaking import BreakRequest, run_break
from engine.jobs.events import EventKind, JobMessage, MessageKind, Report, StopCheck, TrainEvent
from engine.jobs.runner import LocalThreadRunner, Runner
from engine.training.config import preset


class Inbox:
    """Collects a runner's messages; ``wait`` blocks until a job's final message arrived."""

    def __init__(self) -> None:
        self.messages: list[JobMessage] = []
        self._cond = threading.Condition()

    def __call__(self, msg: JobMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def final(self, job_id: str) -> JobMessage | None:
        return next((m for m in self.messages if m.job_id == job_id and m.kind.final), None)

    def wait(self, job_id: str, timeout: float = 10.0) -> JobMessage:
        with self._cond:
            assert self._cond.wait_for(lambda: self.final(job_id) is not None, timeout), f"job {job_id} never ended"
        got = self.final(job_id)
        assert got is not None
        return got


def _echo(inputs: Any, report: Report, should_stop: StopCheck) -> Any:
    report(JobMessage("echo", MessageKind.PROGRESS, "half way", 0.5))
    return inputs


def _fail(inputs: Any, report: Report, should_stop: StopCheck) -> Any:
    raise ValueError("the photo is empty")


def _until_stopped(started: threading.Event, report: Report, should_stop: StopCheck) -> str:
    started.set()
    deadline = time.monotonic() + 10
    while not should_stop() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "stopped" if should_stop() else "ran out"


def test_a_job_sends_its_progress_then_exactly_one_final_message_with_its_id() -> None:
    inbox = Inbox()
    runner: Runner = LocalThreadRunner(inbox)
    job_id = runner.submit("echo", _echo, {"x": 1})
    done = inbox.wait(job_id)
    assert done.kind is MessageKind.DONE and done.result == {"x": 1} and done.fraction == 1.0
    mine = [m for m in inbox.messages if m.job_id == job_id]
    assert [m.kind for m in mine] == [MessageKind.PROGRESS, MessageKind.DONE]
    assert mine[0].text == "half way" and mine[0].job == "echo"
    assert runner.running() == [] and runner.queued() == []
    runner.shutdown()


def test_an_error_is_one_message_with_the_users_text_and_the_traceback() -> None:
    inbox = Inbox()
    runner = LocalThreadRunner(inbox)
    msg = inbox.wait(runner.submit("check", _fail, None))
    assert msg.kind == "error" and msg.text == "the photo is empty"
    assert "ValueError" in msg.details and "_fail" in msg.details
    runner.shutdown()


def test_one_lane_runs_its_jobs_in_order_and_cancel_drops_the_queued_one() -> None:
    inbox = Inbox()
    runner = LocalThreadRunner(inbox)
    started = threading.Event()
    long_id = runner.submit("train", _until_stopped, started, lane="gpu")
    assert started.wait(5)
    queued_id = runner.submit("generate", _echo, "later", lane="gpu")
    other_id = runner.submit("autosave", _echo, "now", lane="io")  # another lane does not wait
    assert inbox.wait(other_id).result == "now"
    assert runner.waiting_for("generate") == "train"
    assert [n for _, n in runner.queued()] == ["generate"] and [n for _, n in runner.running()] == ["train"]
    assert runner.cancel("generate") == [queued_id]  # dropped before it ran: it sends nothing
    runner.cancel("train")
    stopped = inbox.wait(long_id)
    assert stopped.kind is MessageKind.CANCELLED
    assert not [m for m in inbox.messages if m.job_id == queued_id]
    runner.shutdown()


def test_shutdown_cancels_the_running_job_and_reports_the_queued_ones() -> None:
    inbox = Inbox()
    runner = LocalThreadRunner(inbox)
    started = threading.Event()
    running = runner.submit("train", _until_stopped, started)
    assert started.wait(5)
    waiting = runner.submit("generate", _echo, None)
    assert runner.shutdown(timeout_s=5) == [waiting]
    assert inbox.final(running) is not None and inbox.final(running).kind is MessageKind.CANCELLED  # type: ignore[union-attr]
    later = runner.submit("echo", _echo, 3)  # a shut-down runner starts new lane threads on demand
    assert inbox.wait(later).result == 3
    runner.shutdown()


def test_kinds_are_enums_equal_to_their_names() -> None:
    e = TrainEvent("step", global_step=3)
    assert e.kind is EventKind.STEP and e.kind == "step" and f"{e.kind}" == "step"
    assert JobMessage("x", "done").kind is MessageKind.DONE
    with pytest.raises(ValueError):
        JobMessage("x", "finished")


# ------------------------------------------------------------------------------------ run_break
def _request(tmp_path: Path, **kw: Any) -> BreakRequest:
    cfg = preset("quick", phase1_steps=2, phase2_steps=2, checkpoint_every=0, preview_every=0)
    return BreakRequest(make_example_scene(size=64), cfg, tmp_path / "pack", model="tiny-random", **kw)


def test_run_break_stops_with_a_checkpoint_then_resumes_into_a_pack(tmp_path: Path) -> None:
    events: list[TrainEvent] = []
    steps = {"n": 0}

    def on_event(e: TrainEvent) -> None:
        events.append(e)
        steps["n"] += e.kind == EventKind.STEP

    stopped = run_break(_request(tmp_path), on_event, should_stop=lambda: steps["n"] >= 3)
    assert stopped.pack_dir is None and stopped.cancelled_at == 3
    assert stopped.checkpoint is not None and stopped.checkpoint.is_file()
    assert not (tmp_path / "pack" / "pack.json").exists()
    with pytest.raises(BasError, match="--resume"):  # a fresh run would throw the checkpoint away
        run_break(_request(tmp_path))
    done = run_break(_request(tmp_path, resume=True), events.append)
    assert done.pack_dir == tmp_path / "pack" and done.tokens == ["<asset0>", "<asset1>"]
    assert [c["token"] for c in read_manifest(done.pack_dir)["concepts"]] == done.tokens
    assert not (tmp_path / "pack" / "checkpoints").exists()  # the checkpoint went with its empty folder
    assert events[-1].global_step == 4


def test_run_break_refuses_a_folder_that_is_not_a_pack_before_training(tmp_path: Path) -> None:
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "notes.txt").write_text("mine", encoding="utf-8")
    events: list[TrainEvent] = []
    with pytest.raises(OutputError, match="notes.txt|not empty|not a handle pack"):
        run_break(_request(tmp_path), events.append)
    assert events == [] and (tmp_path / "pack" / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_run_break_keeps_the_checkpoint_when_asked(tmp_path: Path) -> None:
    work = tmp_path / "work"
    cfg = preset("quick", phase1_steps=1, phase2_steps=1, checkpoint_every=1, preview_every=0)
    req = BreakRequest(make_example_scene(size=64), cfg, tmp_path / "pack", model="tiny-random", work_dir=work,
                       keep_checkpoint=True)
    assert run_break(req).pack_dir is not None
    assert (work / CHECKPOINT_NAME).is_file()
