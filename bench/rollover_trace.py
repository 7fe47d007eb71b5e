"""Runs the rollover scenario repeatedly with tracing and explains every slow call.

``bench/run --trace-rollover N [--lifetime S] [--seconds S]`` (or this file
directly). Each run is ``worker.py rollover ours --trace`` in the runner's
isolated environment; the trace has, on one clock (CLOCK_MONOTONIC, shared by
the worker and its emulator process):

- every call of the rollover group: start, latency, caller, which token it got
  (numbered in order of first hand-out) and the seconds that token had left;
- every upstream token request: arrival and answer at the emulator;
- the core's log records: "refreshing ... ahead of expiry" (a background
  refresh starts, on the calling thread) and "fetched ... token ... in N ms"
  (a fetch stored its token, on a runtime thread);
- loop ticks that overran by more than 2 ms, and ``time.time() -
  time.perf_counter()`` before and after the run (a clock step shows there).

For each call that took at least ``--threshold`` ms it prints the schedule the
cache must have computed for the token before (``refresh_at`` at 3/4 of its
lifetime, ``usable_until`` at 19/20, as ``src/cache.rs`` ``schedule`` does for
tokens under 200 s) next to what happened, and names the case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import runner  # noqa: E402  (bench/ is not a package)


def run_once(
    lifetime: int, seconds: float, timeout: float, nice: bool = True, fault: str = ""
) -> dict[str, Any]:
    prefix = runner.network_isolation()
    with runner.scratch_env() as env:
        env = {
            **env,
            "BENCH_ROLLOVER_LIFETIME": str(lifetime),
            "BENCH_ROLLOVER_SECONDS": str(seconds),
            "BENCH_ROLLOVER_FAULT": fault,
        }
        command = [*prefix, sys.executable, str(HERE / "worker.py"), "rollover", "ours", "--trace"]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd=runner.ROOT,
            timeout=timeout,
            preexec_fn=runner.raise_priority if nice else None,
            check=False,
        )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            result: dict[str, Any] = json.loads(line[len("BENCH-RESULT ") :])
            return result
    return {"error": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}


def _schedule(stored: float, lifetime: float) -> tuple[float, float]:
    """(refresh_at, usable_until) as cache.rs computes them, for lifetimes under 200 s."""
    margin = min(10.0, lifetime / 20)
    window = max(min(300.0, lifetime / 4), margin)
    return stored + lifetime - window, stored + lifetime - margin


def explain(result: dict[str, Any], threshold_ms: float) -> list[str]:
    """One block per token that slow calls got: the calls, the schedule, what happened."""
    trace = result["trace"]
    began = trace["began"]
    offset = trace["wall_minus_mono"][0]
    exp = {int(k): v for k, v in trace["exp"].items()}
    unanswered = [r for r in trace["upstream"] if r["finished"] is None]
    upstream = sorted(
        (r for r in trace["upstream"] if r["finished"] is not None), key=lambda r: r["finished"]
    )
    fetched = [t for t, _, m in trace["log"] if m.startswith("fetched")]
    # Token #0 was primed just before the run (the last fetch before it); token
    # #k came from the k-th upstream request of the run.
    stores = [max((t for t in fetched if t < began), default=None)]
    stores += [t for t in fetched if t >= began]
    starts = [t for t, _, m in trace["log"] if m.startswith("refreshing")]

    def rel(t: float | None) -> str:
        return "never" if t is None else f"{t - began:+.3f}s"

    lines = []
    drift = (trace["wall_minus_mono"][1] - trace["wall_minus_mono"][0]) * 1000
    if abs(drift) > 1:
        lines.append(f"  clock: wall - monotonic moved by {drift:.1f} ms during the run")
    slow: dict[int, list[tuple[float, float, float]]] = {}
    for start, took, _caller, token, left in trace["calls"]:
        if took * 1000 >= threshold_ms:
            slow.setdefault(token, []).append((start, took, left))
    for token, calls in sorted(slow.items()):
        first = min(c[0] for c in calls)
        end = max(c[0] + c[1] for c in calls)
        worst = max(c[1] for c in calls)
        lines.append(
            f"  {len(calls)} slow call(s) from {rel(first)} to {rel(end)}, worst "
            f"{worst * 1000:.1f} ms; they got token #{token} ({calls[0][2]:.2f} s left)"
        )
        prev = token - 1
        if prev >= 0 and prev < len(stores) and stores[prev] is not None and prev in exp:
            stored = stores[prev]
            life = exp[prev] - (stored + offset)
            refresh_at, usable_until = _schedule(stored, life)
            lines.append(
                f"    token #{prev} before it: stored {rel(stored)}, lifetime seen {life:.3f} s"
                f" -> refresh_at {rel(refresh_at)}, usable_until {rel(usable_until)}"
            )
        if 1 <= token <= len(upstream):
            request = upstream[token - 1]
            lines.append(
                f"    upstream request for token #{token}: arrived {rel(request['started'])}, "
                f"answered {rel(request['finished'])} (connection {request['connection']}, "
                f"HTTP {request['status']})"
            )
        for request in unanswered:
            if request["started"] <= end:
                lines.append(
                    "    upstream request that was never answered: arrived "
                    f"{rel(request['started'])} (connection {request['connection']})"
                )
        near = [rel(t) for t in starts if first - 5 <= t <= end]
        lines.append(f"    background refresh started: {near or 'none in the 5 s before'}")
        for t, thread, message in trace["log"]:
            if first - 5 <= t <= end + 0.05 and not message.startswith("refreshing"):
                lines.append(f"    log {rel(t)} [{thread}] {message[:150]}")
        ticks = [s for s in trace["ticks_over_2ms"] if first - 0.5 <= s[0] <= end]
        if ticks:
            ticks.sort(key=lambda s: -s[1])
            lines.append(
                f"    loop: {len(ticks)} ticks over 3 ms around them, worst (of which on the "
                "OS run queue): "
                + ", ".join(
                    f"{rel(s[0])} {s[1] * 1000:.1f} ms ({s[2] * 1000 if len(s) > 2 else 0:.1f})"
                    for s in ticks[:5]
                )
            )
        for t, d, generation in trace.get("gc", []):
            if t < end and t + d > first:
                lines.append(
                    f"    gen-{generation} garbage collection inside them: {d * 1000:.1f} ms"
                )
    return lines


def summarize(paths: list[Path]) -> None:
    """Every background refresh of the saved runs: when it started, how long, what was left."""
    rows = []
    for path in paths:
        result = json.loads(path.read_text())
        if "trace" in result:
            rows += refreshes(result)
    if not rows:
        return
    late = [r[0] * 1000 for r in rows]
    took = sorted(r[1] * 1000 for r in rows)
    slack = [r[2] * 1000 for r in rows]
    print(
        f"{len(rows)} background refreshes in {len(paths)} runs: started {min(late):.1f} to "
        f"{max(late):.1f} ms after refresh_at; took {took[len(took) // 2]:.0f} ms median, "
        f"{took[-1]:.0f} ms max; finished {min(slack):.0f} ms (least) before usable_until"
    )


def refreshes(result: dict[str, Any]) -> list[tuple[float, float, float]]:
    """(start - refresh_at, duration, usable_until - finish) of each background refresh, s.

    Pairs each "refreshing ... ahead of expiry" record with the "fetched" record
    that follows it; the schedule is that of the token it replaced.
    """
    trace = result["trace"]
    offset = trace["wall_minus_mono"][0]
    exp = {int(k): v for k, v in trace["exp"].items()}
    log = trace["log"]
    fetched = [t for t, _, m in log if m.startswith("fetched")]
    out = []
    token = 0  # the primed token; its store is the last "fetched" before the run
    stored = max((t for t in fetched if t < trace["began"]), default=None)
    for t, _, message in log:
        if not message.startswith("refreshing") or stored is None or token not in exp:
            continue
        finish = next((f for f in fetched if f > t), None)
        if finish is None:
            break
        refresh_at, usable_until = _schedule(stored, exp[token] - (stored + offset))
        out.append((t - refresh_at, finish - t, usable_until - finish))
        token, stored = token + 1, finish
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--lifetime", type=int, default=10, help="token lifetime, s")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run, s")
    parser.add_argument("--threshold", type=float, default=50.0, help="slow call, ms")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "rollover-trace")
    parser.add_argument(
        "--normal-priority", action="store_true", help="do not raise the worker's priority"
    )
    parser.add_argument(
        "--fault", default="", help="upstream fault during the run: latency:S, fail:N or hang:N"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    slow_runs = 0
    for n in range(1, args.runs + 1):
        started = time.monotonic()
        result = run_once(
            args.lifetime,
            args.seconds,
            args.seconds + 120,
            nice=not args.normal_priority,
            fault=args.fault,
        )
        (args.out / f"run-{n}.json").write_text(json.dumps(result))
        if "error" in result:
            print(f"run {n}: {result['error']}", flush=True)
            continue
        print(
            f"run {n} ({time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.1f}): "
            f"max {result['max_ms']:.1f} ms, waited {result['waited']}, "
            f"worst loop lag {result['worst_loop_lag_ms']:.1f} ms, "
            f"{result['token_requests']} upstream, {result['distinct_tokens']} tokens, "
            f"min left {result['min_remaining_s']:.2f} s, "
            f"{result['gc_full_collections']} full GC (worst GC {result['gc_worst_ms']:.1f} ms)",
            flush=True,
        )
        lines = explain(result, args.threshold)
        if lines:
            slow_runs += 1
            print("\n".join(lines), flush=True)
    print(f"{slow_runs} of {args.runs} runs had a call of {args.threshold:.0f} ms or more")
    summarize(sorted(args.out.glob("run-*.json")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
