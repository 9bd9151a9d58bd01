"""Config: typeguard names a wrongly typed field, value checks name the field, TOML files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import flowkernel
from flowkernel import Config


@pytest.mark.parametrize(
    "field, value",
    [
        ("retries", "3"),
        ("app_cache", "yes"),
        ("executors", [object()]),
        ("run_dir", 7),
        ("exit_mode", "later"),
        ("plugins", 5),
        ("garbage_collect", None),
        ("checkpoint_files", [3]),
        ("max_pending_tasks", 2.5),
    ],
)
def test_a_field_of_the_wrong_type_is_rejected_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(flowkernel.ConfigurationTypeError, match=f'"{field}"') as info:
        Config(**{field: value})  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"retries": -1}, "retries"),
        ({"internal_tasks_max_threads": 0}, "internal_tasks_max_threads"),
        ({"dependency_resolver": "sideways"}, "dependency_resolver"),
        ({"plugins": "one_module"}, "plugins"),
        ({"disable_plugins": "threads"}, "disable_plugins"),
        ({"max_pending_tasks": 0}, "max_pending_tasks"),
    ],
)
def test_a_bad_value_is_a_configuration_error_naming_the_field(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(flowkernel.ConfigurationError, match=named):
        Config(**fields)  # type: ignore[arg-type]


def test_duplicate_executor_labels_are_rejected() -> None:
    with pytest.raises(flowkernel.ConfigurationError, match="'same'"):
        Config(
            executors=[
                flowkernel.ThreadPoolExecutor(label="same"),
                flowkernel.ThreadPoolExecutor(label="same"),
            ]
        )


def test_from_toml_reads_fields_executors_and_a_retry_handler(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text("def price(exception, task):\n    return 0.5\n")
    path = tmp_path / "flow.toml"
    path.write_text(
        textwrap.dedent(
            """
            retries = 3
            retry_handler = "handlers:price"
            app_cache = false
            exit_mode = "wait"

            [[executors]]
            kind = "threads"
            label = "cpu"
            max_threads = 3

            [[executors]]
            kind = "threads"
            label = "io"
            """
        )
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        config = Config.from_toml(path)
    finally:
        sys.path.remove(str(tmp_path))
    assert config.retries == 3 and config.app_cache is False and config.exit_mode == "wait"
    assert [(e.label, type(e).__name__) for e in config.executors or []] == [
        ("cpu", "ThreadPoolExecutor"),
        ("io", "ThreadPoolExecutor"),
    ]
    assert config.executors is not None and config.executors[0].max_threads == 3  # type: ignore[attr-defined]
    assert config.retry_handler is not None and config.retry_handler(None, None) == 0.5


@pytest.mark.parametrize(
    "text, message",
    [
        ("retries = \n", "not valid TOML"),
        ("retrys = 2\n", "retrys"),
        ("[[executors]]\nlabel = 'x'\n", "kind"),
        ("[[executors]]\nkind = 'quantum'\n", "quantum"),
        ("[[executors]]\nkind = 'threads'\nmax_thread = 2\n", "max_thread"),
        ("retry_handler = 'no_colon'\n", "retry_handler"),
    ],
)
def test_a_bad_config_file_is_a_configuration_error_saying_what(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(text)
    with pytest.raises(flowkernel.ConfigurationError, match=message) as info:
        Config.from_toml(path)
    assert str(path) in str(info.value) or message in str(info.value)


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(flowkernel.ConfigurationError, match=r"nothing\.toml"):
        Config.from_toml(tmp_path / "nothing.toml")
