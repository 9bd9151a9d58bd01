"""``flowkernel report``: an HTML page (and a PNG timeline) from a monitoring database.

The page needs nothing from the network: styles are inline and the timeline
and the task graph are inline SVG.  The PNG is drawn by a small writer here
(``zlib`` and ``struct``), so no plotting library is needed.

Contents: the workflow summary, a table per app (tasks, failures, retries,
memo hits, mean and longest run time), a timeline (a bar per try, one lane per
executor slot), and the task graph (layered by depth; large graphs are cut to
their first tasks, and the page says so).
"""

from __future__ import annotations

import html
import json
import os
import sqlite3
import struct
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from flowkernel.errors import ConfigurationError

_TRY_ENDS = ("exec_done", "failed", "fail_retryable", "joining")

GRAPH_LIMIT = 400
"""Tasks drawn in the graph at most; the rest are counted, not drawn."""

_PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2"]


@dataclass
class Attempt:
    task_id: int
    try_id: int
    app: str
    executor: str
    start: float
    end: float
    state: str


@dataclass
class Run:
    """What one workflow run left in a monitoring database."""

    workflow: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)

    def apps(self) -> dict[str, dict[str, float]]:
        table: dict[str, dict[str, float]] = defaultdict(
            lambda: {"tasks": 0, "failed": 0, "retries": 0, "memo_hits": 0, "runs": 0,
                     "total_time": 0.0, "max_time": 0.0}
        )  # fmt: skip
        for task in self.tasks:
            row = table[task["app"]]
            row["tasks"] += 1
            row["retries"] += max(0, task["fail_count"] - (1 if task["state"] == "failed" else 0))
            row["failed"] += task["state"] in ("failed", "dep_fail")
            row["memo_hits"] += bool(task["from_memo"])
        for attempt in self.attempts:
            row = table[attempt.app]
            took = attempt.end - attempt.start
            row["runs"] += 1
            row["total_time"] += took
            row["max_time"] = max(row["max_time"], took)
        return dict(table)


def find_database(path: str) -> str:
    """The monitoring database for a run directory, a runinfo folder, or a .db path."""
    if os.path.isfile(path):
        return path
    own = os.path.join(path, "monitoring.db")
    if os.path.isfile(own):
        return own
    if os.path.isdir(path):
        runs = sorted(
            (d for d in os.listdir(path) if os.path.isfile(os.path.join(path, d, "monitoring.db"))),
            key=lambda d: (len(d), d),
        )
        if runs:
            return os.path.join(path, runs[-1], "monitoring.db")
    raise ConfigurationError(
        f"no monitoring database at {path}: run the workflow with Config(monitoring=True)"
    )


def load_run(db_path: str, run_id: str | None = None) -> Run:
    """Read one run (the latest, unless ``run_id`` is given) from a monitoring database."""
    db = sqlite3.connect(db_path)
    db.row_factory = sqlite3.Row
    try:
        query = "SELECT * FROM workflow " + (
            "WHERE run_id = ?" if run_id else "ORDER BY began DESC LIMIT 1"
        )
        row = db.execute(query, (run_id,) if run_id else ()).fetchone()
        if row is None:
            raise ConfigurationError(f"{db_path} holds no workflow run")
        workflow = dict(row)
        workflow["counts"] = json.loads(workflow["counts"] or "{}")
        rid = workflow["run_id"]
        run = Run(workflow)
        starts: dict[tuple[int, int], tuple[str, str, float]] = {}
        transitions = db.execute(
            "SELECT * FROM transition WHERE run_id = ? ORDER BY at", (rid,)
        ).fetchall()
        final_state: dict[int, str] = {}
        for t in transitions:
            key = (t["task_id"], t["try_id"])
            if t["state"] == "launched":
                starts[key] = (t["app"], t["executor"] or "?", t["at"])
            elif key in starts and t["state"] in (
                "exec_done",
                "failed",
                "fail_retryable",
                "joining",
            ):
                app, executor, began = starts.pop(key)
                run.attempts.append(
                    Attempt(t["task_id"], t["try_id"], app, executor, began, t["at"], t["state"])
                )
            final_state[t["task_id"]] = t["state"]
        for task in db.execute(
            "SELECT * FROM task WHERE run_id = ? ORDER BY task_id", (rid,)
        ).fetchall():
            entry = dict(task)
            entry["state"] = final_state.get(entry["task_id"], "?")
            entry["inputs"] = [int(x) for x in (entry["depends"] or "").split(",") if x]
            run.tasks.append(entry)
        return run
    finally:
        db.close()


# -- HTML ---------------------------------------------------------------------------


def _lanes(attempts: list[Attempt]) -> list[tuple[str, int, Attempt]]:
    """Place attempts in lanes per executor so that bars in a lane never overlap."""
    placed = []
    ends: dict[str, list[float]] = defaultdict(list)
    for attempt in sorted(attempts, key=lambda a: a.start):
        lanes = ends[attempt.executor]
        for index, end in enumerate(lanes):
            if end <= attempt.start:
                lanes[index] = attempt.end
                break
        else:
            index = len(lanes)
            lanes.append(attempt.end)
        placed.append((attempt.executor, index, attempt))
    return placed


def _colour(app: str, apps: list[str]) -> str:
    return _PALETTE[apps.index(app) % len(_PALETTE)]


def timeline_svg(run: Run, width: int = 900) -> str:
    placed = _lanes(run.attempts)
    if not placed:
        return "<p>No task ran.</p>"
    apps = sorted({a.app for a in run.attempts})
    t0 = min(a.start for a in run.attempts)
    span = max(a.end for a in run.attempts) - t0 or 1e-9
    rows = sorted({(executor, lane) for executor, lane, _ in placed})
    row_of = {key: i for i, key in enumerate(rows)}
    height = 20 + 14 * len(rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 130}" height="{height}">']
    for (executor, lane), i in row_of.items():
        parts.append(
            f'<text x="0" y="{24 + 14 * i}" font-size="10">{html.escape(executor)}[{lane}]</text>'
        )
    for executor, lane, a in placed:
        x = 130 + (a.start - t0) / span * width
        w = max(1.0, (a.end - a.start) / span * width)
        y = 14 + 14 * row_of[(executor, lane)]
        colour = "#999" if a.state in ("failed", "fail_retryable") else _colour(a.app, apps)
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="12" fill="{colour}">'
            f"<title>task {a.task_id} try {a.try_id} {html.escape(a.app)} "
            f"{a.state} {a.end - a.start:.3f}s</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def graph_svg(run: Run) -> str:
    tasks = run.tasks[:GRAPH_LIMIT]
    if not tasks:
        return "<p>No tasks.</p>"
    ids = {t["task_id"] for t in tasks}
    depth: dict[int, int] = {}
    for t in tasks:  # ids grow with submission, so inputs come first
        depth[t["task_id"]] = 1 + max(
            (depth.get(i, -1) for i in t["inputs"] if i in ids), default=-1
        )
    layers: dict[int, list[int]] = defaultdict(list)
    for task_id, d in depth.items():
        layers[d].append(task_id)
    pos = {}
    for d, members in layers.items():
        for k, task_id in enumerate(members):
            pos[task_id] = (30 + 22 * k, 20 + 50 * d)
    width = 60 + 22 * max(len(m) for m in layers.values())
    height = 40 + 50 * (max(layers) + 1)
    apps = sorted({t["app"] for t in tasks})
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for t in tasks:
        x2, y2 = pos[t["task_id"]]
        for i in t["inputs"]:
            if i in pos:
                x1, y1 = pos[i]
                parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#bbb"/>')
    for t in tasks:
        x, y = pos[t["task_id"]]
        failed = t["state"] in ("failed", "dep_fail")
        parts.append(
            f'<circle cx="{x}" cy="{y}" r="7" fill="{_colour(t["app"], apps)}" '
            f'stroke="{"#d00" if failed else "#333"}" stroke-width="{2 if failed else 1}">'
            f"<title>task {t['task_id']} {html.escape(t['app'])} {t['state']}</title></circle>"
        )
    parts.append("</svg>")
    more = len(run.tasks) - len(tasks)
    note = f"<p>Showing the first {len(tasks)} of {len(run.tasks)} tasks.</p>" if more > 0 else ""
    return note + "".join(parts)


def render_html(run: Run) -> str:
    wf = run.workflow
    began, ended = wf["began"], wf["ended"]
    duration = f"{ended - began:.2f} s" if began and ended else "unfinished"
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(wf["counts"].items())) or "-"
    rows = []
    for app, r in sorted(run.apps().items()):
        mean = r["total_time"] / r["runs"] if r["runs"] else 0.0
        rows.append(
            f"<tr><td>{html.escape(app)}</td><td>{int(r['tasks'])}</td><td>{int(r['failed'])}</td>"
            f"<td>{int(r['retries'])}</td><td>{int(r['memo_hits'])}</td>"
            f"<td>{mean:.4f}</td><td>{r['max_time']:.4f}</td></tr>"
        )
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(began)) if began else "?"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>flowkernel run {html.escape(wf["run_id"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ background: #f4f4f4; }} td {{ text-align: right; }} td:first-child {{ text-align: left; }}
.scroll {{ overflow-x: auto; border: 1px solid #eee; }}
</style></head><body>
<h1>flowkernel run report</h1>
<h2>Workflow</h2>
<table id="summary">
<tr><th>run id</th><td>{html.escape(wf["run_id"])}</td></tr>
<tr><th>name</th><td>{html.escape(wf["name"] or "")}</td></tr>
<tr><th>user@host</th><td>{html.escape(f"{wf['user']}@{wf['host']}")}</td></tr>
<tr><th>started</th><td>{started}</td></tr>
<tr><th>duration</th><td>{duration}</td></tr>
<tr><th>tasks</th><td id="task-count">{wf["tasks"]}</td></tr>
<tr><th>final states</th><td id="counts">{html.escape(counts)}</td></tr>
</table>
<h2>Apps</h2>
<table id="apps"><tr><th>app</th><th>tasks</th><th>failed</th><th>retries</th><th>memo hits</th>
<th>mean run (s)</th><th>longest run (s)</th></tr>
{"".join(rows)}
</table>
<h2>Timeline</h2>
<div class="scroll">{timeline_svg(run)}</div>
<h2>Task graph</h2>
<div class="scroll">{graph_svg(run)}</div>
</body></html>
"""


# -- PNG -------------------------------------------------------------------------------


def _hex(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def timeline_png(run: Run, width: int = 1000, row: int = 12) -> bytes:
    """The timeline as a PNG: one row of pixels-high bars per executor lane."""
    placed = _lanes(run.attempts)
    rows = sorted({(executor, lane) for executor, lane, _ in placed}) or [("", 0)]
    height = max(1, len(rows) * row)
    pixels = [bytearray(b"\xff" * (width * 3)) for _ in range(height)]
    if placed:
        apps = sorted({a.app for a in run.attempts})
        t0 = min(a.start for a in run.attempts)
        span = max(a.end for a in run.attempts) - t0 or 1e-9
        row_of = {key: i for i, key in enumerate(rows)}
        for executor, lane, a in placed:
            x0 = int((a.start - t0) / span * (width - 1))
            x1 = max(x0 + 1, int((a.end - t0) / span * (width - 1)))
            rgb = bytes(_hex("#999999" if a.state in ("failed", "fail_retryable")
                             else _colour(a.app, apps)))  # fmt: skip
            top = row_of[(executor, lane)] * row
            for y in range(top + 1, top + row - 1):
                pixels[y][x0 * 3 : x1 * 3] = rgb * (x1 - x0)
    raw = b"".join(b"\x00" + bytes(line) for line in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def write_report(source: str, out: str | None = None, png: bool = False) -> list[str]:
    """Write ``report.html`` (and ``timeline.png``) beside the database; return the paths."""
    db_path = find_database(source)
    run = load_run(db_path)
    folder = os.path.dirname(os.path.abspath(db_path))
    html_path = out or os.path.join(folder, "report.html")
    with open(html_path, "w", encoding="utf-8") as handle:
        handle.write(render_html(run))
    written = [html_path]
    if png:
        png_path = os.path.splitext(html_path)[0] + "-timeline.png"
        with open(png_path, "wb") as handle:
            handle.write(timeline_png(run))
        written.append(png_path)
    return written
