"""The app's JobRunner over the engine's runner: states right after submit, busy in the done slot, job ids."""

from __future__ import annotations

import threading
from typing import Any

from bas_desktop.workers import JobMessage, JobRunner, MessageKind

TIMEOUT = 10000


def _wait(release: threading.Event, report: Any, should_stop: Any) -> str:
    release.wait(TIMEOUT / 1000)
    return "released"


def test_states_are_right_at_submit_and_a_done_slot_sees_the_job_finished(qtbot) -> None:  # type: ignore[no-untyped-def]
    runner = JobRunner()
    release = threading.Event()
    first = runner.submit("train", _wait, release, lane="gpu")
    runner.submit("generate", _wait, release, lane="gpu")
    runner.submit("autosave", lambda i, r, s: i, 7, lane="io")
    # no event processed yet: the head of each lane counts as running, the rest waits behind it
    assert runner.running() == ["train", "autosave"] and runner.queued() == ["generate"]
    assert runner.waiting_for("generate") == "train" and runner.waiting_for("train") is None

    seen: list[tuple[str, bool, str]] = []

    def on_message(msg: JobMessage) -> None:
        if msg.kind.final:
            seen.append((msg.job, runner.busy(msg.job), msg.job_id))

    runner.message.connect(on_message)
    qtbot.waitUntil(lambda: ("autosave", False) in [(j, b) for j, b, _ in seen], timeout=TIMEOUT)
    release.set()
    assert runner.wait_idle(TIMEOUT)
    assert [(j, b) for j, b, _ in seen] == [("autosave", False), ("train", False), ("generate", False)]
    assert seen[1][2] == first and len({i for _, _, i in seen}) == 3  # each final message names its run
    runner.shutdown()


def test_cancelling_a_queued_job_forgets_it_without_a_message(qtbot) -> None:  # type: ignore[no-untyped-def]
    runner = JobRunner()
    release = threading.Event()
    runner.submit("train", _wait, release)
    runner.submit("generate", _wait, release)
    got: list[JobMessage] = []
    runner.message.connect(got.append)
    runner.cancel("generate")
    assert runner.queued() == [] and not runner.busy("generate") and runner.busy("train")
    release.set()
    assert runner.wait_idle(TIMEOUT)
    assert [(m.job, m.kind) for m in got if m.kind.final] == [("train", MessageKind.DONE)]
    runner.shutdown()
