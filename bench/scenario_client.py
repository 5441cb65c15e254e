#!/usr/bin/env python3
"""The scenario's state writers, watcher and judge (bench/scenario.sh runs it).

watch: while the invocations run, WRITERS threads do read-modify-write increments with
  If-Match on HOT shared counters through the state API (the "shared state written
  concurrently" of the incident), and one thread samples /metrics every 100 ms for the
  largest queue depths. Writes every step to a JSON file when the time is up.
report: reads the openloop report, the mock's stats, the engine's /metrics and every
  session's history and the counters from the engine, prints one row of figures as JSON,
  and with --check fails (exit 1) on any upstream 429, lost update, failed caller or a
  success rate under the target.
Standard library only; every request has a timeout, every loop a bound.
"""

import argparse
import http.client
import json
import re
import sys
import threading
import time

WRITERS = 4
HOT = 10
PAUSE_S = 0.005          # between increments of one writer: a few hundred per second in all
REQUEST_TIMEOUT_S = 10
TRIES_PER_INCREMENT = 50 # conflicts retried; past this the increment is given up and counted
SUCCESS_TARGET = 0.999

METRIC = re.compile(r'^ringmaster_([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$')


def metrics(port):
    """{(name, labels): value} of the engine's /metrics."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    out = {}
    for line in text.splitlines():
        match = METRIC.match(line)
        if match:
            out[(match.group(1), match.group(2) or "")] = float(match.group(3))
    return out


def metric_sum(values, name, **labels):
    total = 0.0
    for (metric, label_text), value in values.items():
        if metric == name and all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += value
    return total


class Writer(threading.Thread):
    """Increments counters/hot-{i} with If-Match until the deadline."""

    def __init__(self, port, index, deadline, stats):
        super().__init__(daemon=True)
        self.port, self.index, self.deadline, self.stats = port, index, deadline, stats

    def request(self, connection, method, path, headers=None, body=None):
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("ETag"), response.read()

    def increment(self, connection, key):
        path = f"/v1/state/counters/{key}"
        for _ in range(TRIES_PER_INCREMENT):
            status, etag, body = self.request(connection, "GET", path)
            if status == 404:
                value, precondition = 0, {"If-None-Match": "*"}
            elif status == 200:
                value, precondition = int(body), {"If-Match": etag}
            else:
                raise RuntimeError(f"GET {path}: {status}")
            status, _, _ = self.request(connection, "PUT", path, precondition, str(value + 1))
            if status in (200, 201):
                return "ok"
            if status != 412:
                raise RuntimeError(f"PUT {path}: {status}")
            self.stats["conflicts"] += 1
        return "given_up"

    def run(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        step = self.index
        while time.monotonic() < self.deadline:
            key = f"hot-{step % HOT}"
            step += 1
            try:
                self.stats[self.increment(connection, key)] += 1
                self.stats["per_key"][key] = self.stats["per_key"].get(key, 0) + 1
            except (OSError, http.client.HTTPException, RuntimeError) as error:
                # The outcome is unknown: the write may have landed. Counted apart.
                self.stats["unknown"] += 1
                self.stats["last_error"] = str(error)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port,
                                                        timeout=REQUEST_TIMEOUT_S)
            time.sleep(PAUSE_S)
        connection.close()


def watch(args):
    deadline = time.monotonic() + args.seconds
    writers = []
    for i in range(WRITERS):
        stats = {"ok": 0, "conflicts": 0, "given_up": 0, "unknown": 0, "per_key": {}}
        writers.append(Writer(args.port, i, deadline, stats))
    for writer in writers:
        writer.start()
    peaks = {"invocation_queue_depth": 0.0, "llm_queue_depth": 0.0, "invocations_running": 0.0}
    while time.monotonic() < deadline + args.drain:
        try:
            values = metrics(args.port)
            for name in peaks:
                peaks[name] = max(peaks[name], metric_sum(values, name))
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    for writer in writers:
        writer.join(REQUEST_TIMEOUT_S * TRIES_PER_INCREMENT)
    merged = {"ok": 0, "conflicts": 0, "given_up": 0, "unknown": 0, "per_key": {}}
    for writer in writers:
        for field in ("ok", "conflicts", "given_up", "unknown"):
            merged[field] += writer.stats[field]
        for key, count in writer.stats["per_key"].items():
            merged["per_key"][key] = merged["per_key"].get(key, 0) + count
    with open(args.out, "w") as out:
        json.dump({"writers": merged, "peaks": peaks}, out)


def get_json(connection, path):
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    return response.status, body


def check_counters(port, writers):
    """Lost updates of the counters: each key's value against its acknowledged increments.
    An increment with an unknown outcome may have landed: it widens the allowed range."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    lost = extra = 0
    total = 0
    for i in range(HOT):
        key = f"hot-{i}"
        status, body = get_json(connection, f"/v1/state/counters/{key}")
        value = int(body) if status == 200 else 0
        acknowledged = writers["per_key"].get(key, 0)
        total += value
        lost += max(0, acknowledged - value)
        extra += max(0, value - acknowledged)
    connection.close()
    return {"acknowledged": writers["ok"], "stored": total, "lost": lost,
            "unexplained_extra": max(0, extra - writers["unknown"]),
            "conflicts_retried": writers["conflicts"], "unknown": writers["unknown"],
            "given_up": writers["given_up"]}


def check_sessions(port, sessions, agent, completed):
    """Lost or doubled updates of the shared session histories: every completed invocation's
    user message appears exactly once in its session."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    seen = {}
    duplicates = 0
    for k in range(sessions):
        status, body = get_json(connection, f"/v1/state/sessions/{agent}/u{k}")
        if status != 200:
            continue
        for message in json.loads(body).get("messages", []):
            if message.get("role") != "user":
                continue
            tag = str(message.get("content"))
            duplicates += 1 if tag in seen else 0
            seen[tag] = k
    connection.close()
    return {"messages": len(seen), "completed_invocations": int(completed),
            "lost": max(0, int(completed) - len(seen)), "duplicated": duplicates}


def quantiles_ms(histogram):
    return {q: histogram.get(q, 0) / 1000.0 for q in ("p50", "p99", "p99.9", "max")}


def report(args):
    with open(args.openloop) as f:
        load = json.load(f)
    with open(args.mock) as f:
        mock = json.load(f)
    with open(args.watch) as f:
        watched = json.load(f)
    values = metrics(args.port)
    outcomes = {o: metric_sum(values, "invocations_total", outcome=o)
                for o in ("completed", "failed", "cancelled")}
    finished = sum(outcomes.values())
    codes = {int(c): n for c, n in load["codes"].items()}
    told_to_retry = codes.get(429, 0) + codes.get(503, 0)
    failed_callers = (sum(n for c, n in codes.items() if c >= 500 and c != 503) +
                      load["timeouts"] + load["connect_errors"] + load["malformed"])
    tools = {o: metric_sum(values, "tool_calls_total", outcome=o)
             for o in ("ok", "error", "timeout", "fallback", "short_circuited")}
    row = {
        "volume": args.volume,
        "rate_per_s": load["rate"],
        "seconds": load["duration_s"],
        "intended": load["intended"],
        "accepted": codes.get(200, 0) + codes.get(202, 0),
        "told_to_retry_429_503": told_to_retry,
        "failed_callers": failed_callers,
        "caller_answers": {"codes": load["codes"], "timeouts": load["timeouts"],
                           "connect_errors": load["connect_errors"],
                           "malformed": load["malformed"], "unsent": load["unsent"]},
        "invocations": {k: int(v) for k, v in outcomes.items()},
        "success_rate": outcomes["completed"] / finished if finished else 0.0,
        "latency_ms": quantiles_ms(load["latency_2xx_us"]),
        "all_answers_latency_ms": quantiles_ms(load["latency_us"]),
        "max_queue_depth": {"invocations": watched["peaks"]["invocation_queue_depth"],
                            "llm": watched["peaks"]["llm_queue_depth"]},
        "max_running": watched["peaks"]["invocations_running"],
        "upstream_429": mock["rejected_429"]["total"],
        "llm_calls": mock["requests"]["chat_completions"],
        "llm_in_flight_peak": mock["in_flight_peak"],
        "llm_retries": int(metric_sum(values, "llm_retries_total")),
        "tool_calls": {k: int(v) for k, v in tools.items()},
        "tool_retries": int(metric_sum(values, "tool_retries_total")),
        "tool_faults_injected": {"errors": mock["errors_injected"]["tools"],
                                 "hangs": mock["hangs"]["tools"]},
        "breaker_openings": int(metric_sum(values, "breaker_transitions_total", to="open")),
        "state_writes": check_counters(args.port, watched["writers"]),
        "sessions": check_sessions(args.port, args.sessions, args.agent, outcomes["completed"]),
    }
    print(json.dumps(row))
    if not args.check:
        return 0
    problems = []
    if row["upstream_429"]:
        problems.append(f"{row['upstream_429']} upstream 429s")
    if row["state_writes"]["lost"] or row["state_writes"]["unexplained_extra"]:
        problems.append(f"state counters: {row['state_writes']}")
    if row["sessions"]["lost"] or row["sessions"]["duplicated"]:
        problems.append(f"session histories: {row['sessions']}")
    if failed_callers:
        problems.append(f"{failed_callers} callers failed (5xx other than 503, timeouts, "
                        f"connection errors): codes {codes}")
    if row["success_rate"] < SUCCESS_TARGET:
        problems.append(f"success rate {row['success_rate']:.4f} < {SUCCESS_TARGET}")
    for problem in problems:
        print(f"scenario {args.volume}: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def table(args):
    """A markdown table of the rows, one volume per line."""
    print("| volume | rate/s | admitted | success | tool fallbacks | p50 / p99 / p99.9 ms | "
          "max queue (inv / llm) | 429+503 to callers | failed callers | upstream 429 | "
          "breaker openings | lost updates (counters / sessions) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in args.rows:
        with open(path) as f:
            row = json.loads(f.readline())
        latency = row["latency_ms"]
        print(f"| {row['volume']} | {row['rate_per_s']:.0f} | {row['accepted']} | "
              f"{100 * row['success_rate']:.2f}% | {row['tool_calls']['fallback']} | "
              f"{latency['p50']:.0f} / {latency['p99']:.0f} / {latency['p99.9']:.0f} | "
              f"{row['max_queue_depth']['invocations']:.0f} / "
              f"{row['max_queue_depth']['llm']:.0f} | {row['told_to_retry_429_503']} | "
              f"{row['failed_callers']} | {row['upstream_429']} | {row['breaker_openings']} | "
              f"{row['state_writes']['lost']} / {row['sessions']['lost']} |")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("watch")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--seconds", type=float, required=True)
    w.add_argument("--drain", type=float, default=5.0)
    w.add_argument("--out", required=True)
    r = sub.add_parser("report")
    for name in ("--openloop", "--mock", "--watch", "--volume", "--agent"):
        r.add_argument(name, required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--sessions", type=int, required=True)
    r.add_argument("--check", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("rows", nargs="*")
    args = parser.parse_args()
    return {"watch": watch, "report": report, "table": table}[args.mode](args) or 0


if __name__ == "__main__":
    sys.exit(main())
