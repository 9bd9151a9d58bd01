"""Files, data futures and staging providers."""

from __future__ import annotations

import http.server
import os
import socket
import sys
import textwrap
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from _support import WAIT

import flowkernel
from flowkernel import File, bash_app, python_app

# -- File ------------------------------------------------------------------------


def test_a_plain_path_is_a_local_file() -> None:
    f = File("/data/run1/sample.csv")
    assert (f.scheme, f.netloc, f.path) == ("file", "", "/data/run1/sample.csv")
    assert f.filename == "sample.csv"
    assert f.filepath == "/data/run1/sample.csv"
    assert os.fspath(f) == str(f) == "/data/run1/sample.csv"


def test_a_url_is_split_into_its_parts() -> None:
    f = File("https://example.org/data/sample.csv")
    assert (f.scheme, f.netloc, f.path) == ("https", "example.org", "/data/sample.csv")
    assert f.filename == "sample.csv"
    assert f.local_path is None
    with pytest.raises(ValueError, match="no local copy"):
        _ = f.filepath


def test_a_file_url_has_its_path_as_filepath() -> None:
    f = File("file:///tmp/x/y.txt")
    assert f.scheme == "file" and f.filepath == "/tmp/x/y.txt"


def test_cleancopy_forgets_staging_state() -> None:
    f = File("http://host/a.txt")
    f.local_path = "/tmp/a.txt"
    copy = f.cleancopy()
    assert copy.url == f.url and copy.local_path is None
    assert f.filepath == "/tmp/a.txt"


# -- Data futures and outputs ------------------------------------------------------


def test_outputs_become_data_futures_that_complete_with_the_file(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    @python_app
    def write(text: str, outputs: list[File] = []) -> None:  # noqa: B006 - Parsl idiom
        Path(outputs[0]).write_text(text)

    target = tmp_path / "o.txt"
    future = write("hello", outputs=[File(str(target))])
    assert len(future.outputs) == 1
    data = future.outputs[0]
    assert isinstance(data, flowkernel.DataFuture)
    assert data.tid == future.tid
    produced = data.result(timeout=WAIT)
    assert isinstance(produced, File) and produced.filepath == str(target)
    assert data.file_obj is produced
    assert target.read_text() == "hello"


def test_output_paths_given_as_strings_become_files(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    @python_app
    def touch(outputs: list[File] = []) -> None:  # noqa: B006 - Parsl idiom
        Path(outputs[0]).touch()

    future = touch(outputs=[str(tmp_path / "t")])
    assert future.outputs[0].result(timeout=WAIT).filepath == str(tmp_path / "t")


def test_a_python_app_missing_a_declared_output_fails_with_missing_outputs(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    @python_app
    def forgets(outputs: list[File] = []) -> int:  # noqa: B006 - Parsl idiom
        return 1

    future = forgets(outputs=[File(str(tmp_path / "never"))])
    with pytest.raises(flowkernel.MissingOutputs, match="forgets"):
        future.result(timeout=WAIT)
    with pytest.raises(flowkernel.MissingOutputs):
        future.outputs[0].result(timeout=WAIT)


def test_a_bash_pipeline_passes_files_through_data_futures(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    @bash_app
    def generate(n: int, outputs: list[File] = []) -> str:  # noqa: B006 - Parsl idiom
        return f"seq 1 {n} > {outputs[0]}"

    @bash_app
    def square(inputs: list[File] = [], outputs: list[File] = []) -> str:  # noqa: B006
        return f"awk '{{print $1 * $1}}' {inputs[0]} > {outputs[0]}"

    @bash_app
    def merge(inputs: list[File] = [], outputs: list[File] = []) -> str:  # noqa: B006
        files = " ".join(str(f) for f in inputs)
        return f"cat {files} | awk '{{s += $1}} END {{print s}}' > {outputs[0]}"

    parts = []
    for i, n in enumerate([3, 4, 5]):
        made = generate(n, outputs=[File(str(tmp_path / f"gen{i}.txt"))])
        squared = square(inputs=[made.outputs[0]], outputs=[File(str(tmp_path / f"sq{i}.txt"))])
        parts.append(squared.outputs[0])
    total = merge(inputs=parts, outputs=[File(str(tmp_path / "total.txt"))])
    result = total.outputs[0].result(timeout=WAIT)
    expected = sum(k * k for n in (3, 4, 5) for k in range(1, n + 1))
    assert Path(result).read_text().strip() == str(expected)


def test_a_failed_producer_fails_the_consumer_with_dependency_error(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    @bash_app
    def broken(outputs: list[File] = []) -> str:  # noqa: B006 - Parsl idiom
        return "exit 2"

    @bash_app
    def consume(inputs: list[File] = []) -> str:  # noqa: B006 - Parsl idiom
        return f"cat {inputs[0]}"

    producer = broken(outputs=[File(str(tmp_path / "x"))])
    consumer = consume(inputs=[producer.outputs[0]])
    with pytest.raises(flowkernel.DependencyError) as info:
        consumer.result(timeout=WAIT)
    assert isinstance(info.value.__cause__, flowkernel.BashExitFailure)


# -- HTTP stage-in against a real server on loopback ---------------------------------


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))

    class QuietHandler(handler.func):  # type: ignore[misc, name-defined]
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_an_http_input_is_downloaded_before_the_app_runs(
    config_factory, http_root: tuple[str, Path], in_tmp: Path
) -> None:
    base, root = http_root
    (root / "numbers.txt").write_text("1\n2\n3\n")

    @python_app
    def total(inputs: list[File] = []) -> int:  # noqa: B006 - Parsl idiom
        return sum(int(line) for line in Path(inputs[0]).read_text().split())

    with flowkernel.load(config_factory(initialize_logging=False)):
        future = total(inputs=[File(f"{base}/numbers.txt")])
        assert future.result(timeout=WAIT) == 6
    assert (in_tmp / "numbers.txt").read_text() == "1\n2\n3\n"


def test_a_stage_in_runs_as_its_own_task_on_the_staging_executor(
    config_factory, http_root: tuple[str, Path], in_tmp: Path
) -> None:
    base, root = http_root
    (root / "a.txt").write_text("a")
    seen: list[tuple[str, str | None]] = []

    class Watch:
        @flowkernel.hookimpl
        def flowkernel_task_state_changed(self, task, old, new):  # type: ignore[no-untyped-def]
            if new.name == "exec_done":
                seen.append((task.func_name, task.executor))

    @python_app
    def read(f: File) -> str:
        return Path(f).read_text()

    with flowkernel.load(config_factory(plugins=[Watch()])):
        assert read(File(f"{base}/a.txt")).result(timeout=WAIT) == "a"
    assert ("stage_in_task", "_flowkernel_staging") in seen
    assert ("read", "threads") in seen


def test_a_404_fails_the_dependent_task_with_the_cause(
    config_factory, http_root: tuple[str, Path], in_tmp: Path
) -> None:
    base, _ = http_root

    @python_app
    def read(f: File) -> str:
        return "never runs"

    with flowkernel.load(config_factory()):
        future = read(File(f"{base}/missing.txt"))
        with pytest.raises(flowkernel.DependencyError) as info:
            future.result(timeout=WAIT)
    cause = info.value.__cause__
    assert isinstance(cause, flowkernel.StagingError)
    assert "404" in str(cause) and "missing.txt" in str(cause)


def test_a_refused_connection_fails_the_dependent_task_with_the_cause(
    config_factory, in_tmp: Path
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    @python_app
    def read(f: File) -> str:
        return "never runs"

    with flowkernel.load(config_factory()):
        with pytest.raises(flowkernel.DependencyError) as info:
            read(File(f"http://127.0.0.1:{port}/x.txt")).result(timeout=WAIT)
    cause = info.value.__cause__
    assert isinstance(cause, flowkernel.StagingError)
    assert "refused" in str(cause).lower()


def test_a_scheme_no_provider_handles_fails_the_task_naming_the_scheme(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @python_app
    def read(f: File) -> str:
        return "never runs"

    with pytest.raises(flowkernel.StagingError, match="'s3'"):
        read(File("s3://bucket/key.csv")).result(timeout=WAIT)


def test_staging_inhibit_passes_files_through_untouched(dfk: flowkernel.DataFlowKernel) -> None:
    @python_app
    def url_of(f: File) -> str:
        return f.url

    future = url_of(File("s3://bucket/key.csv"), _parsl_staging_inhibit=True)
    assert future.result(timeout=WAIT) == "s3://bucket/key.csv"


# -- A custom provider from a flowconf.py -------------------------------------------------

_FLOWCONF = textwrap.dedent(
    """
    import os
    from flowkernel.staging import StagingProvider

    STORE = {"memory://samples/a.txt": "alpha", "memory://samples/b.txt": "beta"}
    SHIPPED = {}

    class MemoryStaging(StagingProvider):
        schemes = ("memory",)

        def can_stage_out(self, file):
            return file.scheme == "memory"

        def stage_in(self, file):
            def fetch(f):
                path = os.path.join(os.getcwd(), f.filename)
                with open(path, "w") as out:
                    out.write(STORE[f.url])
                f.local_path = path
            return fetch

        def wrap_stage_out(self, file, runner):
            # Inside the task: run the app, then ship the file it wrote.
            local = os.path.join(os.getcwd(), file.filename)
            file.local_path = local
            def staged(*args, **kwargs):
                result = runner(*args, **kwargs)
                with open(local) as f:
                    SHIPPED[file.url] = f.read()
                return result
            return staged

    def flowkernel_staging_providers():
        return [MemoryStaging()]
    """
)


def test_flowkernel_staging_providers_from_a_flowconf_handle_a_made_up_scheme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_dir: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("")
    (project / "flowconf.py").write_text(_FLOWCONF)
    monkeypatch.chdir(project)
    monkeypatch.delenv("FLOWKERNEL_NOCONF")

    @python_app
    def shout(inputs: list[File] = [], outputs: list[File] = []) -> str:  # noqa: B006
        text = Path(inputs[0]).read_text().upper()
        Path(outputs[0]).write_text(text)
        return text

    with flowkernel.load(flowkernel.Config(run_dir=run_dir)):
        future = shout(
            inputs=[File("memory://samples/a.txt")], outputs=[File("memory://results/a.txt")]
        )
        assert future.result(timeout=WAIT) == "ALPHA"
        future.outputs[0].result(timeout=WAIT)
    flowconf = next(
        m
        for m in list(sys.modules.values())
        if getattr(m, "__file__", None) == str((project / "flowconf.py").resolve())
    )
    assert flowconf.SHIPPED == {"memory://results/a.txt": "ALPHA"}


def test_a_provider_that_raises_fails_the_task_naming_the_hook_and_plugin(
    config_factory,
) -> None:
    class Broken(flowkernel.staging.StagingProvider):
        def can_stage_in(self, file: File) -> bool:
            raise RuntimeError("provider bug")

    class BrokenPlugin:
        @flowkernel.hookimpl
        def flowkernel_staging_providers(self):  # type: ignore[no-untyped-def]
            return [Broken()]

    @python_app
    def read(f: File) -> str:
        return "x"

    @python_app
    def fine() -> int:
        return 1

    with flowkernel.load(config_factory(plugins=[BrokenPlugin()])):
        with pytest.raises(flowkernel.HookError, match="flowkernel_staging_providers") as info:
            read(File("/tmp/x")).result(timeout=WAIT)
        assert "BrokenPlugin" in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert fine().result(timeout=WAIT) == 1
