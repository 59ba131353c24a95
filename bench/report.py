"""The report of a bench run: the table of rows (text and markdown), each row also as a multiple of
the floor (bench/floor.py), the profile's steps, the targets marked met or missed (bench/targets.py),
and the raw results as JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from measure import NETS, Row, median
from paths import STATE
from targets import targets

if TYPE_CHECKING:
    from session import Bench

PROFILE_STEPS = [
    ("start", "python start-up and imports (gevent, pyinfra, pydantic, vsa_ops)"),
    ("inventory", "inventory and group_data"),
    ("render", "render the manifest (once; `vsa-ops deploy` renders while it connects)"),
    ("connect", "SSH connect"),
    ("state", "the state command (1 remote command, from the controller)"),
    ("script", "  of which the state script on the host (docker exec, less its start-up)"),
    ("plan", "plan"),
    ("disconnect", "disconnect"),
]


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def _fmt_cmds(row: Row, nets) -> str:
    parts = []
    for net in nets:
        values = sorted({s.commands for s in row.samples[net] if s.ok and s.commands is not None})
        if not values:
            parts.append("-")
        else:
            parts.append(str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}")
    return parts[0] if len(set(parts)) == 1 else " / ".join(parts)


def _flags(row: Row) -> str:
    notes = []
    samples = [s for net in NETS for s in row.samples[net]]
    failed = sum(1 for s in samples if not s.ok)
    if failed:
        notes.append(f"{failed} failed")
    if any(s.noop is False for s in samples):
        notes.append("not always a no-op")
    return ", ".join(notes)


def _floor_multiple(bench: Bench, row: Row) -> str:
    """The row's medians over its floor row's (the state read through OpenSSH on the same link): the
    floor of 200 domains unless the row names another; "-" for the floor rows themselves."""
    if row.group == "floor":
        return "-"
    floor = bench.rows.get(row.extra.get("floor", "floor-200"))
    if floor is None:
        return "-"
    parts = []
    for net in bench.nets:
        ours, base = median(row.samples[net]), median(floor.samples[net])
        parts.append(f"{ours / base:.1f}x" if ours and base else "-")
    return " / ".join(parts)


def table(bench: Bench, markdown: bool) -> str:
    nets = bench.nets
    rtt = f"+{2 * bench.args.delay_ms:g} ms RTT"
    header = ["row", *("loopback" if n == "lo" else rtt for n in nets), "x floor", "remote commands", "max RSS",
              "runs"]
    lines = []
    for row in bench.rows.values():
        memory = median([s for n in nets for s in row.samples[n]], "rss_kb")
        tree = median([s for n in nets for s in row.samples[n]], "tree_rss_kb")
        rss = "-" if not memory else f"{memory / 1024:.0f} MB"
        if tree:
            rss += f" (tree {tree / 1024:.0f} MB)"
        runs = "/".join(str(sum(1 for s in row.samples[n] if s.ok)) for n in nets)
        flags = _flags(row)
        lines.append([row.label + (f" [{flags}]" if flags else ""),
                      *(_fmt_s(median(row.samples[n])) for n in nets), _floor_multiple(bench, row),
                      _fmt_cmds(row, nets), rss, runs])
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    fmt = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(line) for line in lines)])


def breakdown(bench: Bench, markdown: bool) -> str:
    if not bench.profile or not any(bench.profile.values()):
        return ""
    nets = [n for n in bench.nets if bench.profile.get(n)]
    rtt = f"+{2 * bench.args.delay_ms:g} ms RTT"
    header = ["step (no-op converge, 200 domains, 1 host)", *("loopback" if n == "lo" else rtt for n in nets)]
    rows = [[label, *(_fmt_s(statistics.median(p[key] for p in bench.profile[n])) for n in nets)]
            for key, label in PROFILE_STEPS]
    sample = bench.profile[nets[0]][0]
    rows.append(["paths checked / state command / its output", f"{sample['paths']} / {sample['command_bytes']} B / "
                 f"{sample['output_bytes']} B", *([""] * (len(nets) - 1))])
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|---" + "|---:" * len(nets) + "|"]
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in [header, *rows])


def report(bench: Bench) -> str:
    meta = bench.meta
    machine = (f"{meta.get('cores')} cores, {meta.get('memory_gib')} GiB, {meta.get('os')}, kernel "
               f"{meta.get('kernel')}, Python {meta.get('python')}, pyinfra {meta.get('pyinfra')}"
               + (f", {meta['ansible']}" if meta.get("ansible") else "") + "; lab hosts on loopback")
    lines = [f"vsa-ops bench, {meta.get('started')}: medians of {bench.runs} run(s); {machine}", "",
             table(bench, markdown=False), "", breakdown(bench, markdown=False), "", "Targets:"]
    for name, value, met, why in targets(bench):
        lines.append(f"  [{'met' if met else 'MISSED'}] {name}: {value}" + ("" if met else f" (why: {why})"))
    lines += ["", "Markdown:", "",
              f"Medians of {bench.runs} run(s), {bench.started:%Y-%m-%d}; {machine}. Remote commands: SSH session "
              "channels counted by the lab hosts' sshd.", "", table(bench, markdown=True), "",
              breakdown(bench, markdown=True), "", "| target | measured | | why missed |", "|---|---|---|---|"]
    for name, value, met, why in targets(bench):
        lines.append(f"| {name} | {value} | {'met' if met else '**missed**'} | {'' if met else why} |")
    return "\n".join(lines)


def save(bench: Bench, text: str) -> Path:
    STATE.mkdir(parents=True, exist_ok=True)
    path = bench.args.json or STATE / f"results-{bench.started:%Y%m%d-%H%M%S}.json"
    data = {"meta": bench.meta, "runs": bench.runs,
            "rows": {k: {"label": r.label, "group": r.group, "extra": r.extra,
                         "samples": {n: [asdict(s) for s in v] for n, v in r.samples.items()}}
                     for k, r in bench.rows.items()},
            "profile": bench.profile, "targets": [{"target": t, "measured": v, "met": m, "why": w} for t, v, m, w in targets(bench)],
            "report": text}
    Path(path).write_text(json.dumps(data, indent=1))
    return Path(path)
