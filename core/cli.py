"""The ``flowkernel`` command: demo, plugins, hooks, checkpoints, report, ``--version``.

Exit codes: 0 success, 1 the command ran and failed, 2 bad usage.  This is the
only module of flowkernel that prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from flowkernel.errors import FlowkernelError


def _parser() -> argparse.ArgumentParser:
    from flowkernel import __version__

    parser = argparse.ArgumentParser(prog="flowkernel", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"flowkernel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a small workflow and print a summary")
    demo.add_argument("--bound", type=int, default=200_000, help="count primes below this")
    demo.add_argument("--chunks", type=int, default=16, help="tasks to fan out over")
    demo.add_argument("--run-dir", default=None, help="where runinfo goes (default: a temp dir)")

    plugins = commands.add_parser("plugins", help="list registered plugins and their hooks")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument("--hook", default=None, help="only plugins implementing this hook")

    report = commands.add_parser(
        "report", help="write an HTML report of a monitored run (Config(monitoring=True))"
    )
    report.add_argument("source", help="a run directory, a runinfo folder or a monitoring .db")
    report.add_argument("-o", "--output", default=None, help="where to write the HTML page")
    report.add_argument("--png", action="store_true", help="also write the timeline as a PNG")

    hooks = commands.add_parser("hooks", help="describe the hook specs plugins implement")
    hooks.add_argument("--markdown", action="store_true", help="print the reference page")

    checkpoints = commands.add_parser(
        "checkpoints", help="list checkpoints under a run directory and what each holds"
    )
    checkpoints.add_argument(
        "run_dir", nargs="?", default="runinfo", help="a runinfo folder or one run's folder"
    )
    checkpoints.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from flowkernel.demo import run_demo

    summary = run_demo(bound=args.bound, chunks=args.chunks, run_dir=args.run_dir)
    print("flowkernel demo")
    for line in summary.lines():
        print("  " + line)
    agrees = summary.primes == summary.primes_by_join == summary.primes_by_bash
    return 0 if agrees else 1


def _cmd_plugins(args: argparse.Namespace) -> int:
    from flowkernel import hookspecs
    from flowkernel.pluginmanager import default_plugins

    if args.hook is not None and args.hook not in hookspecs.HOOK_NAMES:
        print(
            f"flowkernel: unknown hook {args.hook!r}; hooks: {', '.join(hookspecs.HOOK_NAMES)}",
            file=sys.stderr,
        )
        return 2
    plugins = default_plugins()
    infos = [
        info for info in plugins.infos.values() if args.hook is None or args.hook in info.hooks
    ]
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return 0
    for info in infos:
        print(f"{info.name}  ({info.describe_origin()})")
        if info.path:
            print(f"    file:  {info.path}")
        print(f"    hooks: {', '.join(info.hooks) or '-'}")
    kinds = plugins.executor_kinds()
    if kinds and args.hook is None:
        print("executor kinds: " + ", ".join(f"{k} ({p})" for k, (p, _) in sorted(kinds.items())))
    return 0


def hook_reference() -> str:
    """The hook reference page (``docs/hooks.md``), generated from the specs' docstrings."""
    import inspect

    from flowkernel import hookspecs

    lines = [
        "# Hook reference",
        "",
        "Generated from `flowkernel/hookspecs.py` by `flowkernel hooks --markdown`; do not edit.",
        "",
        inspect.cleandoc(hookspecs.__doc__ or ""),
        "",
        "| hook | first result wins |",
        "|---|---|",
    ]
    for name in hookspecs.HOOK_NAMES:
        first = _first_result(name)
        lines.append(f"| [`{name}`](#{name}) | {'yes' if first else 'no (every plugin)'} |")
    for name in hookspecs.HOOK_NAMES:
        spec = getattr(hookspecs, name)
        signature = str(inspect.signature(spec)).replace("'", "")
        lines += ["", f"## {name}", "", "```py", f"def {name}{signature}: ...", "```", ""]
        lines.append(inspect.cleandoc(spec.__doc__ or ""))
    return "\n".join(lines) + "\n"


def _first_result(name: str) -> bool:
    from flowkernel import hookspecs
    from flowkernel.markers import PROJECT_NAME

    opts = getattr(getattr(hookspecs, name), f"{PROJECT_NAME}_spec", {})
    return bool(opts.get("firstresult"))


def _cmd_report(args: argparse.Namespace) -> int:
    # The report lives with the monitoring plugin in contrib; it needs nothing extra.
    from flowkernel.contrib.report import write_report

    for path in write_report(args.source, args.output, args.png):
        print(path)
    return 0


def _cmd_hooks(args: argparse.Namespace) -> int:
    if args.markdown:
        print(hook_reference(), end="")
        return 0
    from flowkernel import hookspecs

    for name in hookspecs.HOOK_NAMES:
        doc = (getattr(hookspecs, name).__doc__ or "").strip().splitlines()[0]
        tag = "first result wins" if _first_result(name) else "every plugin"
        print(f"{name}  ({tag})\n    {doc}")
    return 0


def _cmd_checkpoints(args: argparse.Namespace) -> int:
    import os

    from flowkernel.checkpoints import CHECKPOINT_DIR, get_all_checkpoints
    from flowkernel.config import Config
    from flowkernel.pluginmanager import default_plugins

    if not os.path.isdir(args.run_dir):
        print(f"flowkernel: {args.run_dir}: no such directory", file=sys.stderr)
        return 1
    own = os.path.join(args.run_dir, CHECKPOINT_DIR)
    folders = [os.path.abspath(own)] if os.path.isdir(own) else get_all_checkpoints(args.run_dir)
    rows = []
    for folder in folders:
        store = default_plugins().checkpoint_store(Config(), os.path.dirname(folder))
        try:
            rows.append({"checkpoint": folder, "results": len(store.load([folder]))})
        finally:
            store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no checkpoints under {args.run_dir}")
    else:
        for row in rows:
            print(f"{row['results']:>8} result(s)  {row['checkpoint']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "checkpoints":
            return _cmd_checkpoints(args)
        if args.command == "hooks":
            return _cmd_hooks(args)
        if args.command == "report":
            return _cmd_report(args)
        return _cmd_plugins(args)
    except FlowkernelError as exc:
        print(f"flowkernel: {exc}", file=sys.stderr)
        return 1
