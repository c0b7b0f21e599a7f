#!/usr/bin/env python3
"""Summarize a scripts/compare.sh results file as Markdown tables.

    python3 bench/peers/summarize.py target/compare/results-TIMESTAMP.jsonl

The file holds one JSON object per line: first a meta line
({"cmp_meta": true, ...}: machine, versions, settings), then one line per
wsload run: wsload's own JSON object with four fields added by compare.sh,
cmp_server (wsnotify, wsnotify-base for a --baseline binary, uws, ws),
cmp_round, cmp_test (idle, fanout_ws, fanout_http, echo, channels_idle,
channels, channels_http, idle_deflate, fanout_deflate_300,
fanout_deflate_3k) and cmp_exit
(wsload's exit status). A run is invalid when wsload exited non-zero,
printed no JSON, or said "valid": false; invalid runs are listed and left out
of the medians. Standard library only.
"""

import json
import os
import platform
import statistics
import subprocess
import sys

SERVERS = ["wsnotify", "wsnotify-base", "uws", "ws"]
SERVER_NAMES = {
    "wsnotify": "wsnotify",
    "wsnotify-base": "wsnotify baseline (--baseline binary)",
    "uws": "uWebSockets.js (uws.js)",
    "ws": "ws (ws.js)",
}

# (title, test, path to the figure in wsload's JSON, unit, better)
FIGURES = [
    ("Handshakes per second (idle test, connecting)", "idle", ("handshakes_per_sec",), "/s", "higher"),
    ("Handshakes per second of server CPU (idle test, connecting)", "idle", ("handshakes_per_server_cpu_sec",), "/CPU-s", "higher"),
    ("wsload CPU while connecting (idle test; near 100 % wsload, not the server, limited the handshake rate)", "idle", ("handshake_client_cpu_percent",), "%", "lower"),
    ("Server RSS per idle connection", "idle", ("rss_per_conn_bytes",), "bytes", "lower"),
    ("Server anonymous memory (RssAnon: heap and stacks, no program pages) per idle connection", "idle", ("anon_per_conn_bytes",), "bytes", "lower"),
    ("Server CPU while idle", "idle", ("idle_cpu_percent",), "%", "lower"),
    ("Fanout, published over WebSocket (chat): deliveries per second", "fanout_ws", ("deliveries_per_sec",), "/s", "higher"),
    ("Fanout, published over WebSocket (chat): delivery latency p99", "fanout_ws", ("lat_us", "p99"), "µs", "lower"),
    ("Fanout, published over HTTP (POST /broadcast): deliveries per second", "fanout_http", ("deliveries_per_sec",), "/s", "higher"),
    ("Fanout, published over HTTP (POST /broadcast): delivery latency p99", "fanout_http", ("lat_us", "p99"), "µs", "lower"),
    ("Echo (/echo, 64 connections × 8 in flight): messages per second", "echo", ("msgs_per_sec",), "/s", "higher"),
    ("Echo (/echo, 64 connections × 8 in flight): round trip p99", "echo", ("rtt_us", "p99"), "µs", "lower"),
    ("Channels, 3 per connection: server RSS per connection", "channels_idle", ("rss_per_conn_bytes",), "bytes", "lower"),
    ("Channels, 3 per connection: server anonymous memory (RssAnon) per connection", "channels_idle", ("anon_per_conn_bytes",), "bytes", "lower"),
    ("Channels of 10, chat on random channels: deliveries per second", "channels", ("deliveries_per_sec",), "/s", "higher"),
    ("Channels of 10, chat on random channels: delivery latency p99", "channels", ("lat_us", "p99"), "µs", "lower"),
    ("Channels of 10, chat on random channels: deliveries per second of server CPU", "channels", ("deliveries_per_server_cpu_sec",), "/CPU-s", "higher"),
    ("Channels of 10, published over HTTP (POST /broadcast with channel): deliveries per second", "channels_http", ("deliveries_per_sec",), "/s", "higher"),
    ("Channels of 10, published over HTTP (POST /broadcast with channel): delivery latency p99", "channels_http", ("lat_us", "p99"), "µs", "lower"),
    ("Channels of 10, published over HTTP (POST /broadcast with channel): deliveries per second of server CPU", "channels_http", ("deliveries_per_server_cpu_sec",), "/CPU-s", "higher"),
    ("Handshakes per second offering permessage-deflate (idle test, connecting)", "idle_deflate", ("handshakes_per_sec",), "/s", "higher"),
    ("Handshakes per second of server CPU offering permessage-deflate (idle test, connecting)", "idle_deflate", ("handshakes_per_server_cpu_sec",), "/CPU-s", "higher"),
    ("Server RSS per idle connection, permessage-deflate negotiated", "idle_deflate", ("rss_per_conn_bytes",), "bytes", "lower"),
    ("Server anonymous memory per idle connection, permessage-deflate negotiated", "idle_deflate", ("anon_per_conn_bytes",), "bytes", "lower"),
    ("Compressed fanout, ~300-byte JSON notifications (POST /broadcast): deliveries per second", "fanout_deflate_300", ("deliveries_per_sec",), "/s", "higher"),
    ("Compressed fanout, ~300-byte JSON notifications: bytes on the wire per delivery", "fanout_deflate_300", ("wire_bytes_per_delivery",), "bytes", "lower"),
    ("Compressed fanout, ~300-byte JSON notifications: delivery latency p99", "fanout_deflate_300", ("lat_us", "p99"), "µs", "lower"),
    ("Compressed fanout, ~3 KB JSON notifications (POST /broadcast): deliveries per second", "fanout_deflate_3k", ("deliveries_per_sec",), "/s", "higher"),
    ("Compressed fanout, ~3 KB JSON notifications: bytes on the wire per delivery", "fanout_deflate_3k", ("wire_bytes_per_delivery",), "bytes", "lower"),
    ("Compressed fanout, ~3 KB JSON notifications: delivery latency p99", "fanout_deflate_3k", ("lat_us", "p99"), "µs", "lower"),
]


def load(path):
    meta, runs, bad = {}, [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                bad.append((number, line[:120]))
                continue
            if not isinstance(obj, dict):
                bad.append((number, line[:120]))
            elif obj.get("cmp_meta"):
                meta = obj
            else:
                runs.append(obj)
    return meta, runs, bad


def dig(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    if isinstance(obj, bool) or not isinstance(obj, (int, float)):
        return None
    return float(obj)


def has_path(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return False
        obj = obj[key]
    return True


def invalid_reason(run):
    reasons = []
    if run.get("cmp_exit", 0) != 0:
        reasons.append(f"exit {run.get('cmp_exit')}")
    if run.get("cmp_no_output"):
        reasons.append("no JSON output")
    if run.get("valid") is False:
        reasons.append("valid=false")
    for key in ("missing", "duplicates"):
        if isinstance(run.get(key), (int, float)) and run[key]:
            reasons.append(f"{key}={run[key]}")
    if run.get("error"):
        reasons.append(str(run["error"])[:80])
    if run.get("cmp_exit", 0) == 0 and not run.get("cmp_no_output") and run.get("valid") is not False:
        return None
    return ", ".join(reasons) or "invalid"


def fmt(value, unit):
    if value is None:
        return "—"
    if unit == "%":
        return f"{value:.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def machine_lines(meta):
    if meta:
        keys = [
            ("date", "date"), ("nproc", "nproc"), ("cpu_model", "CPU"), ("kernel", "kernel"),
            ("node", "node"), ("uws_package", "@trufflesuite/uws-js-unofficial"),
            ("ws_package", "ws"), ("bufferutil_package", "bufferutil"), ("wsnotify", "wsnotify"),
            ("pinning", "pinning"), ("settings", "settings"), ("loadavg_start", "load average at start"),
            ("loadavg_end", "load average at end"),
        ]
        return [f"- {label}: {meta[key]}" for key, label in keys if meta.get(key) not in (None, "")]
    # No meta line (a hand-made file): describe this machine.
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        node = "not found"
    return [f"- nproc: {os.cpu_count()}", f"- CPU: {cpu}", f"- kernel: {platform.release()}", f"- node: {node}",
            "- (no meta line in the results file: this describes the machine summarizing, not necessarily the one measuring)"]


def summarize(path):
    meta, runs, bad = load(path)
    present = [SERVER_NAMES.get(s, s) for s in SERVERS if any(r.get("cmp_server") == s for r in runs)]
    out = [f"# {' vs '.join(present) or 'wsnotify'}", "", f"Results: `{path}`", "", "Machine:", ""]
    out += machine_lines(meta)
    out.append("")
    servers = [s for s in SERVERS if any(r.get("cmp_server") == s for r in runs)]
    servers += sorted({r.get("cmp_server") for r in runs if r.get("cmp_server") not in SERVERS} - {None})

    invalid = {}
    for run in runs:
        reason = invalid_reason(run)
        if reason:
            invalid[id(run)] = reason

    tests_run = {r.get("cmp_test") for r in runs}
    for title, test, path_, unit, better in FIGURES:
        if test not in tests_run:
            continue
        # A results file from before wsload reported a figure has lines
        # without its field: no table rather than one of empty rows.
        printed = [r for r in runs if r.get("cmp_test") == test and not r.get("cmp_no_output")]
        if printed and not any(has_path(r, path_) for r in printed):
            continue
        out.append(f"## {title} ({unit}, {better} is better)")
        out.append("")
        out.append("| server | valid runs | median | range (min–max) | wsnotify/server (medians) |")
        out.append("|---|---|---|---|---|")
        medians = {}
        rows = []
        for server in servers:
            mine = [r for r in runs if r.get("cmp_server") == server and r.get("cmp_test") == test]
            values = [dig(r, path_) for r in mine if id(r) not in invalid]
            values = [v for v in values if v is not None]
            median = statistics.median(values) if values else None
            medians[server] = median
            rng = f"{fmt(min(values), unit)}–{fmt(max(values), unit)}" if values else "—"
            rows.append((server, f"{len(values)}/{len(mine)}", median, rng))
        base = medians.get("wsnotify")
        for server, count, median, rng in rows:
            if base is None or median is None or median == 0:
                ratio = "—"
            else:
                ratio = f"{base / median:.2f}"
            out.append(f"| {SERVER_NAMES.get(server, server)} | {count} | {fmt(median, unit)} | {rng} | {ratio} |")
        out.append("")

    channel_tests = [t for t in ("channels_idle", "channels", "channels_http") if t in tests_run]
    if channel_tests:
        out.append("## Channels: expected deliveries missing, every run counted")
        out.append("")
        out.append("| server | test | runs | expected | missing | duplicates |")
        out.append("|---|---|---|---|---|---|")
        for server in servers:
            for test in channel_tests:
                mine = [r for r in runs if r.get("cmp_server") == server and r.get("cmp_test") == test]
                total = lambda key: sum(int(r.get(key) or 0) for r in mine)
                out.append(f"| {SERVER_NAMES.get(server, server)} | {test} | {len(mine)} | {total('expected'):,} | "
                           f"{total('missing'):,} | {total('duplicates'):,} |")
        out.append("")

    if invalid:
        out.append("## Invalid runs (left out of the medians)")
        out.append("")
        for run in runs:
            if id(run) in invalid:
                out.append(f"- {run.get('cmp_server')} round {run.get('cmp_round')} {run.get('cmp_test')}: {invalid[id(run)]}")
        out.append("")
    if bad:
        out.append("## Lines that are not JSON objects")
        out.append("")
        for number, text in bad:
            out.append(f"- line {number}: `{text}`")
        out.append("")
    out.append("Ratios are wsnotify's median divided by the server's: above 1 means wsnotify is higher "
               "(better for rates, worse for latency, memory and CPU). RSS per connection is the server's "
               "VmRSS growth over the idle connections divided by their number, the same method for every "
               "server (for Node it includes V8 heap growth). Handshakes per second of server CPU are N over "
               "the CPU time of all the server's threads (/proc/PID/task/*/schedstat) from the first connect to "
               "the last ready connection: unlike handshakes per second, they do not depend on whether the "
               "server or wsload saturated its core first.")
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    sys.stdout.write(summarize(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
