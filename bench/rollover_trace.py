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


def run_once(lifetime: int, seconds: float, timeout: float) -> dict[str, Any]:
    prefix = runner.network_isolation()
    with runner.scratch_env() as env:
        env = {
            **env,
            "BENCH_ROLLOVER_LIFETIME": str(lifetime),
            "BENCH_ROLLOVER_SECONDS": str(seconds),
        }
        command = [*prefix, sys.executable, str(HERE / "worker.py"), "rollover", "ours", "--trace"]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd=runner.ROOT,
            timeout=timeout,
            preexec_fn=runner.raise_priority,
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
    trace = result["trace"]
    began = trace["began"]
    offset = trace["wall_minus_mono"][0]
    exp = {int(k): v for k, v in trace["exp"].items()}
    upstream = sorted(trace["upstream"], key=lambda r: r["finished"] or 1e18)
    stores = [t for t, _, m in trace["log"] if m.startswith("fetched")]
    starts = [t for t, _, m in trace["log"] if m.startswith("refreshing")]

    def rel(t: float | None) -> str:
        return "never" if t is None else f"{t - began:+.3f}s"

    lines = []
    drift = (trace["wall_minus_mono"][1] - trace["wall_minus_mono"][0]) * 1000
    if abs(drift) > 1:
        lines.append(f"  clock: wall - monotonic moved by {drift:.1f} ms during the run")
    for start, took, caller, token, left in trace["calls"]:
        if took * 1000 < threshold_ms:
            continue
        lines.append(
            f"  slow call at {rel(start)}: {took * 1000:.1f} ms, caller {caller}, "
            f"got token #{token} with {left:.2f} s left"
        )
        prev = token - 1
        # Token #0 was primed before the run; token #k (k >= 1) came from the k-th
        # upstream request of the run, stored when the core logged "fetched".
        stored_prev = None
        if prev >= 1 and prev - 1 < len(stores):
            stored_prev = stores[prev - 1]
        if prev >= 0 and stored_prev is not None:
            life = exp[prev] - (stored_prev + offset)
            refresh_at, usable_until = _schedule(stored_prev, life)
            lines.append(
                f"    token #{prev} before it: stored {rel(stored_prev)}, lifetime seen "
                f"{life:.3f} s -> refresh_at {rel(refresh_at)}, usable_until {rel(usable_until)}"
            )
        request = upstream[token - 1] if 1 <= token <= len(upstream) else None
        if request is not None:
            lines.append(
                f"    request for token #{token}: arrived {rel(request['started'])}, "
                f"answered {rel(request['finished'])} (connection {request['connection']}, "
                f"HTTP {request['status']})"
            )
        near = [t for t in starts if start - 5 <= t <= start + took]
        lines.append(f"    background refresh starts in the 5 s before: {[rel(t) for t in near]}")
        stalls = [(t, d) for t, d in trace["ticks_over_2ms"] if start - 0.5 <= t <= start + took]
        if stalls:
            lines.append(
                "    loop ticks over 3 ms around it: "
                + ", ".join(f"{rel(t)} {d * 1000:.1f} ms" for t, d in stalls)
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--lifetime", type=int, default=10, help="token lifetime, s")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run, s")
    parser.add_argument("--threshold", type=float, default=50.0, help="slow call, ms")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "rollover-trace")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    slow_runs = 0
    for n in range(1, args.runs + 1):
        started = time.monotonic()
        result = run_once(args.lifetime, args.seconds, timeout=args.seconds + 120)
        (args.out / f"run-{n}.json").write_text(json.dumps(result))
        if "error" in result:
            print(f"run {n}: {result['error']}", flush=True)
            continue
        print(
            f"run {n} ({time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.1f}): "
            f"max {result['max_ms']:.1f} ms, waited {result['waited']}, "
            f"worst loop lag {result['worst_loop_lag_ms']:.1f} ms, "
            f"{result['token_requests']} upstream, {result['distinct_tokens']} tokens, "
            f"min left {result['min_remaining_s']:.2f} s",
            flush=True,
        )
        lines = explain(result, args.threshold)
        if lines:
            slow_runs += 1
            print("\n".join(lines), flush=True)
    print(f"{slow_runs} of {args.runs} runs had a call of {args.threshold:.0f} ms or more")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
