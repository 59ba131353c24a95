"""The report of a bench run: the table of rows (text and markdown), the profile's steps, the issue's
targets marked met or missed, and the raw results as JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from measure import NETS, Row, median
from paths import STATE

if TYPE_CHECKING:
    from session import Bench

PROFILE_STEPS = [
    ("start", "python start-up and imports (gevent, pyinfra, pydantic, vsa_ops)"),
    ("inventory", "inventory and group_data"),
    ("render", "render the manifest (once)"),
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


def table(bench: Bench, markdown: bool) -> str:
    nets = bench.nets
    rtt = f"+{2 * bench.args.delay_ms:g} ms RTT"
    header = ["row", *("loopback" if n == "lo" else rtt for n in nets), "remote commands", "max RSS", "runs"]
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
                      *(_fmt_s(median(row.samples[n])) for n in nets), _fmt_cmds(row, nets), rss, runs])
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    fmt = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(line) for line in lines)])


def targets(bench: Bench) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of the issue whose rows ran."""
    rows, out = bench.rows, []
    med = lambda key, net: median(rows[key].samples[net]) if key in rows else None  # noqa: E731
    wan = "wan" if "wan" in bench.nets else None
    if wan and med("noop-200", wan) is not None:
        value = med("noop-200", wan)
        out.append(("no-op converge, 200 domains, +50 ms RTT: within 3 s", _fmt_s(value), value <= 3.0))
    for domains in ("", "200"):
        for tool, factor in (("pyinfra", 10), ("ansible", 30)):
            for net in bench.nets:
                ours, theirs = med(f"same{domains}-vsa-ops", net), med(f"same{domains}-{tool}", net)
                if ours and theirs:
                    ratio = theirs / ours
                    where = "loopback" if net == "lo" else "+50 ms RTT"
                    name = "stock pyinfra" if tool == "pyinfra" else "Ansible"
                    out.append((f"same work ({domains or 0} domains), {where}: >= {factor}x faster than {name}",
                                f"{ratio:.1f}x ({_fmt_s(theirs)} vs {_fmt_s(ours)})", ratio >= factor))
    counts = {}
    for key in ("noop-0", "noop-50", "noop-200"):
        if key in rows:
            counts[key] = sorted({s.commands for n in bench.nets for s in rows[key].samples[n] if s.ok})
    if counts:
        flat = {c for values in counts.values() for c in values}
        out.append(("remote commands of a no-op converge independent of the number of domains",
                    ", ".join(f"{k.split('-')[1]} domains: {'/'.join(map(str, v))}" for k, v in counts.items()),
                    len(flat) == 1))
    if wan and med("add-http", wan) is not None:
        value = med("add-http", wan)
        out.append(("add-domain without ACME, +50 ms RTT: under 2 s", _fmt_s(value), value < 2.0))
    for net in bench.nets:
        one, ten = med("hosts-1", net), med("hosts-10", net)
        if one and ten:
            where = "loopback" if net == "lo" else "+50 ms RTT"
            out.append((f"10 hosts in parallel, {where}: within 1.5x one host", f"{ten / one:.2f}x "
                        f"({_fmt_s(ten)} vs {_fmt_s(one)})", ten / one <= 1.5))
    return out


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
    for name, value, met in targets(bench):
        lines.append(f"  [{'met' if met else 'MISSED'}] {name}: {value}")
    lines += ["", "Markdown:", "",
              f"Medians of {bench.runs} run(s), {bench.started:%Y-%m-%d}; {machine}. Remote commands: SSH session "
              "channels counted by the lab hosts' sshd.", "", table(bench, markdown=True), "",
              breakdown(bench, markdown=True), "", "| target | measured | |", "|---|---|---|"]
    for name, value, met in targets(bench):
        lines.append(f"| {name} | {value} | {'met' if met else '**missed**'} |")
    return "\n".join(lines)


def save(bench: Bench, text: str) -> Path:
    STATE.mkdir(parents=True, exist_ok=True)
    path = bench.args.json or STATE / f"results-{bench.started:%Y%m%d-%H%M%S}.json"
    data = {"meta": bench.meta, "runs": bench.runs,
            "rows": {k: {"label": r.label, "group": r.group, "extra": r.extra,
                         "samples": {n: [asdict(s) for s in v] for n, v in r.samples.items()}}
                     for k, r in bench.rows.items()},
            "profile": bench.profile, "targets": [{"target": t, "measured": v, "met": m} for t, v, m in targets(bench)],
            "report": text}
    Path(path).write_text(json.dumps(data, indent=1))
    return Path(path)
