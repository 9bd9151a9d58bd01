"""An app's future completes only after the kernel has finished with the task."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from _support import WAIT

import flowkernel
from flowkernel import File, python_app
from flowkernel.staging import StagingProvider


def test_state_hooks_have_seen_the_final_state_when_the_future_completes(
    config_factory,
) -> None:
    seen: dict[int, list[str]] = {}
    lock = threading.Lock()

    class Recorder:
        @flowkernel.hookimpl
        def flowkernel_task_state_changed(self, task, old, new):  # type: ignore[no-untyped-def]
            with lock:
                seen.setdefault(task.id, []).append(new.name)

    observed_at_completion: list[list[str]] = []

    @python_app
    def work(x: int) -> int:
        if x % 3 == 0:
            raise ValueError(x)
        return x

    with flowkernel.load(config_factory(plugins=[Recorder()])):
        futures = [work(x) for x in range(30)]
        for future in futures:
            future.add_done_callback(lambda f: observed_at_completion.append(list(seen[f.tid])))
        flowkernel.wait_for_current_tasks()
    assert len(observed_at_completion) == 30
    assert all(states[-1] in ("exec_done", "failed") for states in observed_at_completion)


class ShipToFolder(StagingProvider):
    """Stage-out for a made-up ``ship://`` scheme: copies the file into a folder."""

    schemes = ("ship",)

    def __init__(self, folder: Path, scratch: Path, release: threading.Event) -> None:
        self.folder, self.scratch, self.release = folder, scratch, release

    def can_stage_out(self, file: File) -> bool:
        return file.scheme == "ship"

    def stage_out(self, file: File) -> Any:
        file.local_path = str(self.scratch / file.filename)

        def ship(f: File) -> None:
            assert self.release.wait(WAIT)
            source = self.scratch / f.filename
            (self.folder / f.filename).write_bytes(source.read_bytes())

        return ship


def test_outputs_are_staged_out_before_the_app_future_completes(
    config_factory, tmp_path: Path
) -> None:
    shipped, scratch = tmp_path / "shipped", tmp_path / "scratch"
    shipped.mkdir()
    scratch.mkdir()
    release = threading.Event()
    provider = ShipToFolder(shipped, scratch, release)

    class Plugin:
        @flowkernel.hookimpl
        def flowkernel_staging_providers(self):  # type: ignore[no-untyped-def]
            return [provider]

    @python_app
    def report(outputs: list[File] = []) -> str:  # noqa: B006 - Parsl idiom
        Path(outputs[0]).write_text("results")
        return "written"

    with flowkernel.load(config_factory(plugins=[Plugin()])):
        future = report(outputs=[File("ship://archive/report.txt")])
        assert not future.done() or future.exception() is not None
        release.set()
        assert future.result(timeout=WAIT) == "written"
        # Completed means shipped: no waiting on the data future needed.
        assert (shipped / "report.txt").read_text() == "results"
        assert future.outputs[0].result(timeout=WAIT).filename == "report.txt"


def test_a_failed_stage_out_fails_the_app_with_the_cause(config_factory, tmp_path: Path) -> None:
    class Broken(StagingProvider):
        def can_stage_out(self, file: File) -> bool:
            return file.scheme == "ship"

        def stage_out(self, file: File) -> Any:
            file.local_path = os.devnull

            def ship(f: File) -> None:
                raise ConnectionError("archive unreachable")

            return ship

    class Plugin:
        @flowkernel.hookimpl
        def flowkernel_staging_providers(self):  # type: ignore[no-untyped-def]
            return [Broken()]

    @python_app
    def report(outputs: list[File] = []) -> str:  # noqa: B006 - Parsl idiom
        return "written"

    with flowkernel.load(config_factory(plugins=[Plugin()])):
        future = report(outputs=[File("ship://archive/r.txt")])
        with pytest.raises(flowkernel.StagingError, match="stage-out failed") as info:
            future.result(timeout=WAIT)
    assert isinstance(info.value.__cause__, ConnectionError)
