"""Runs every scenario for ADK's stock exchanger and ours, interleaved, and judges them.

Each (scenario, implementation, repetition) is a fresh ``worker.py`` process
with an isolated environment: temporary HOME and CLOUDSDK_CONFIG, no
GOOGLE_APPLICATION_CREDENTIALS, no proxies, the metadata variables on a closed
loopback port until the worker points them at its emulator, and (where
``unshare -n`` works) a network namespace with nothing but loopback. Within a
repetition the two exchangers alternate, and which goes first alternates
between repetitions; google-auth used directly and ADK 1.24.1's stock
exchanger run in the first few repetitions of the scenarios they apply to.

``judge.py`` decides; this prints its table, writes ``bench/results/latest.md``
and ``latest.json`` and, for a full run, ``bench/RESULTS.md``, and exits with
the judgement's status (0 met, 1 missed, 3 within noise).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import judge as judging  # noqa: E402  (bench/ is not a package)

ALL = 0  # every repetition
# Scenario -> implementation -> repetitions it runs (ALL, or the first N). Only
# ours' figures and stock's references are judged; stock runs fewer repetitions
# where nothing of it is judged (rollover, rss, mcp_rotation), and google-auth /
# ADK 1.24 are comparison columns, except in httpx_auth and verify, where
# google-auth is the thing compared (ADK has no httpx auth and no verifier) and
# runs every repetition, paired with ours.
SCENARIOS: dict[str, dict[str, int]] = {
    "warm": {"stock": ALL, "ours": ALL},
    "cold_key": {"stock": ALL, "ours": ALL, "gauth": 3, "adk1": 3},
    "cold_metadata": {"stock": ALL, "ours": ALL, "gauth": 3, "adk1": 3},
    "burst_loop": {"stock": ALL, "ours": ALL, "gauth": 3},
    "burst_threads": {"stock": ALL, "ours": ALL, "gauth": 3, "adk1": 3},
    "rollover": {"stock": 3, "ours": ALL},
    "audiences_key": {"stock": ALL, "ours": ALL},
    "audiences_metadata": {"stock": ALL, "ours": ALL},
    "import": {"ours": ALL},
    "rss": {"stock": 3, "ours": ALL},
    "coroutine": {"stock": ALL, "ours": ALL},
    "httpx_auth": {"gauth": ALL, "ours": ALL},
    "mcp_rotation": {"stock": 3, "ours": ALL},
    "verify": {"gauth": ALL, "ours": ALL},
}
IMPLS = ("stock", "ours", "gauth", "adk1")
DEFAULT_REPS = 10
WORKER_TIMEOUT = 180  # seconds; the longest scenario (rollover) takes ~20 s
ADK1_PYTHON = ROOT / ".venv-adk1" / "bin" / "python"

Results = judging.Results
DASH = judging.DASH


# -- isolation --------------------------------------------------------------------------


def network_isolation() -> list[str]:
    """``unshare -n`` prefix (loopback only) when this user may create a namespace."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return []
    probe = ["unshare", "-n", "sh", "-c", "ip link set lo up"]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        return []
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']


def isolated_env(scratch: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOOGLE_", "GCE_", "CLOUDSDK_", "RUST_LOG"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    home, gcloud = scratch / "home", scratch / "gcloud"
    home.mkdir(exist_ok=True)
    gcloud.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        CLOUDSDK_CONFIG=str(gcloud),
        # A closed loopback port; the worker repoints both at its emulator.
        GCE_METADATA_HOST="127.0.0.1:9",
        GCE_METADATA_IP="127.0.0.1:9",
        NO_PROXY="*",
        PYTHONPATH=os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT / "python")])),
    )
    return env


@contextlib.contextmanager
def scratch_env() -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="adk-token-exchange-bench-") as scratch:
        yield isolated_env(Path(scratch))


def raise_priority() -> None:
    # Other work on a small shared machine shows up as latency spikes and loop
    # lag; a higher priority for the worker (and the emulator it starts) keeps
    # most of it out. Without the privilege, run at normal priority.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, -10)


# -- running ----------------------------------------------------------------------------


def _dump_stacks(pid: int, name: str) -> Path | None:
    """Native and Python stacks of a hung worker (gdb), for the report."""
    if not shutil.which("gdb"):
        return None
    out = HERE / "results" / f"hang-{name}-{pid}.txt"
    out.parent.mkdir(exist_ok=True)
    gdb = ["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt", "-ex", "detach"]
    try:
        done = subprocess.run(gdb, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return None
    out.write_text(done.stdout + done.stderr)
    return out


def python_for(impl: str) -> Path | None:
    if impl == "adk1":
        return ADK1_PYTHON if ADK1_PYTHON.exists() else None
    return Path(sys.executable)


def run_worker(
    scenario: str, impl: str, quick: bool, prefix: list[str], env: dict[str, str], timeout: int
) -> dict[str, Any]:
    python = python_for(impl)
    if python is None:
        return {"error": f"{ADK1_PYTHON} not found (run scripts/bootstrap)"}
    command = [*prefix, str(python), str(HERE / "worker.py"), scenario, impl]
    if quick:
        command.append("--quick")
    worker = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "BENCH_WORKER_TIMEOUT": str(timeout)},
        cwd=ROOT,
        preexec_fn=raise_priority,
        start_new_session=True,  # a hung worker is killed with its emulator
    )
    try:
        stdout, stderr = worker.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        dump = _dump_stacks(worker.pid, f"{scenario}-{impl}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, 9)
        _, stderr = worker.communicate()
        python_stacks = HERE / "results" / f"hang-{scenario}-{impl}-{worker.pid}-python.txt"
        python_stacks.parent.mkdir(exist_ok=True)
        python_stacks.write_text(stderr)
        return {
            "error": f"hung: no result after {timeout} s; stacks: {dump}, {python_stacks}",
            "hung": True,
        }
    for line in stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            result: dict[str, Any] = json.loads(line[len("BENCH-RESULT ") :])
            return result
    tail = (stderr or stdout).strip().splitlines()[-3:]
    return {"error": f"exit {worker.returncode}: " + " | ".join(tail)}


def plan_for(
    reps: int, only: list[str] | None, impls: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    """Scenario -> implementation -> repetitions it will run."""
    plan: dict[str, dict[str, int]] = {}
    for scenario, by_impl in SCENARIOS.items():
        if only and scenario not in only:
            continue
        chosen = {i: (reps if n == ALL else min(n, reps)) for i, n in by_impl.items() if i in impls}
        if chosen:
            plan[scenario] = chosen
    return plan


def run_order(by_impl: dict[str, int], rep: int) -> list[str]:
    """Who runs in repetition ``rep`` (0-based), in order.

    The compared pair goes first, back to back, which of them first alternating
    between repetitions: ours and ADK's stock or, where ADK has nothing of the
    kind (httpx auth, verification), ours and google-auth. The other columns follow.
    """
    pair = ("stock", "ours") if "stock" in by_impl else ("gauth", "ours")
    order = [i for i in pair if i in by_impl and rep < by_impl[i]]
    if rep % 2:
        order.reverse()
    return order + [
        i for i in ("gauth", "adk1") if i not in pair and i in by_impl and rep < by_impl[i]
    ]


def run_all(plan: dict[str, dict[str, int]], reps: int, quick: bool, timeout: int) -> Results:
    prefix = network_isolation()
    if not prefix:
        print("(unshare -n unavailable: isolation by environment only)", file=sys.stderr)
    results: Results = {s: {i: [] for i in by_impl} for s, by_impl in plan.items()}
    with scratch_env() as env:
        for rep in range(reps):
            for scenario, by_impl in plan.items():
                for impl in run_order(by_impl, rep):
                    started = time.monotonic()
                    result = run_worker(scenario, impl, quick, prefix, env, timeout)
                    took = time.monotonic() - started
                    status = "hung" if result.get("hung") else result.get("error", "ok")
                    print(
                        f"  rep {rep + 1}/{reps} {scenario:<19} {impl:<5} {took:5.1f} s  {status}",
                        file=sys.stderr,
                        flush=True,
                    )
                    results[scenario][impl].append(result)
    return results


# -- the report -------------------------------------------------------------------------


def _command_output(command: list[str]) -> str:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, check=False, cwd=ROOT
        ).stdout.strip()
    except OSError:
        return ""


def _native_mtime() -> float:
    native = sorted((ROOT / "python" / "adk_token_exchange").glob("_native*.so"))
    return native[0].stat().st_mtime if native else 0.0


def machine() -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    probe = (
        "import importlib.metadata as m;"
        "print(*(m.version(p) for p in ('google-adk', 'google-auth', 'requests')))"
    )
    versions = _command_output([sys.executable, "-c", probe]).split()
    adk1 = _command_output([str(ADK1_PYTHON), "-c", probe]).split() if ADK1_PYTHON.exists() else []
    ours = _command_output(
        [sys.executable, "-c", "import adk_token_exchange as a; print(a.__version__)"]
    )
    built = _native_mtime()
    sources = [*(ROOT / "src").rglob("*.rs"), ROOT / "Cargo.toml", ROOT / "Cargo.lock"]
    changed = max((p.stat().st_mtime for p in sources if p.exists()), default=0.0)
    dirty = bool(_command_output(["git", "status", "--porcelain", "--", "src", "python"]))
    return {
        "native_built": datetime.fromtimestamp(built, timezone.utc).strftime("%H:%M UTC")
        if built
        else "missing",
        "native_stale": "yes" if built < changed else "no",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _command_output(["git", "rev-parse", "--short", "HEAD"])
        + (" + uncommitted changes in src/ or python/" if dirty else ""),
        "nproc": str(os.cpu_count()),
        "cpu": cpu or "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "google-adk": versions[0] if versions else "?",
        "google-auth": versions[1] if len(versions) > 1 else "?",
        "requests": versions[2] if len(versions) > 2 else "?",
        "google-adk-1": adk1[0] if adk1 else "not installed",
        "adk-token-exchange": ours or "not importable",
    }


def _columns(facts: dict[str, str]) -> dict[str, str]:
    return {
        "stock": f"ADK {facts.get('google-adk', '2.x')} stock",
        "ours": "Ours",
        "gauth": "google-auth direct",
        "adk1": f"ADK {facts.get('google-adk-1', '1.24.1')} stock",
    }


def table(rows: list[judging.Row], columns: dict[str, str]) -> str:
    head = ["Target", "Metric", *columns.values(), "Goal", "Result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        verdict = r.verdict if r.verdict and r.goal else ""
        cells = [r.cells.get(i, judging.NOT_MEASURED) for i in columns]
        lines.append("| " + " | ".join([r.target, r.metric, *cells, r.goal, verdict]) + " |")
    return "\n".join(lines)


def report(
    results: Results,
    verdict: judging.Judgement,
    facts: dict[str, str],
    args: argparse.Namespace,
    took: float,
) -> str:
    columns = _columns(facts)
    rows = verdict.rows
    targets = [r for r in rows if r.judged and not r.integrity]
    checks = [r for r in rows if r.integrity]
    mode = "quick smoke run" if args.quick else "full run" if _is_full(args) else "partial run"
    text = [
        "# Benchmark results: ADK's `ServiceAccountCredentialExchanger` vs adk-token-exchange",
        "",
        f"Generated by `bench/run{' --quick' if args.quick else ''}` ({mode}, "
        f"{args.reps} repetition(s), {took / 60:.1f} min) on {facts['date']}, "
        f"commit `{facts['commit']}`.",
        "",
        f"Machine: {facts['nproc']} CPUs ({facts['cpu']}), Linux {facts['kernel']}; "
        f"Python {facts['python']}, google-adk {facts['google-adk']} "
        f"(and {facts['google-adk-1']} in `.venv-adk1`), google-auth {facts['google-auth']}, "
        f"requests {facts['requests']}, adk-token-exchange {facts['adk-token-exchange']} "
        f"(native module built {facts['native_built']}"
        + (", **older than a file in src/**" if facts["native_stale"] == "yes" else "")
        + ").",
        "",
    ]
    if os.environ.get("BENCH_BREAK"):
        text += [f"**Deliberately broken run: BENCH_BREAK={os.environ['BENCH_BREAK']}.**", ""]
    text += [
        f"Each cell: median over repetitions (min{DASH}max); `CI`: 95 % percentile-bootstrap "
        f"confidence interval of the median ({judging.RESAMPLES} resamples of the repetitions, "
        f"seed {judging.SEED}; ratios paired per repetition). {judging.NOT_MEASURED}: not "
        "measured. Every scenario ran in a fresh process per implementation against the "
        "local Google emulator (its own process, loopback only). See `bench/README.md` for "
        "what each scenario does and how rows are judged.",
        "",
        f"**Verdict: {_headline(verdict)}**",
        "",
        "## Summary (the judged targets)",
        "",
        table(targets, columns),
        "",
    ]
    problems = verdict.reasons()
    if problems:
        text += ["## Misses and rows within noise", "", *(f"- {p}" for p in problems), ""]
    if verdict.findings:
        text += ["## Findings", "", *(f"- {f}" for f in verdict.findings), ""]
    text += [
        "## Integrity checks (judged: a miss here makes the scenario's targets misses)",
        "",
        table(checks, columns),
        "",
        "## All figures",
        "",
        table([r for r in rows if not r.integrity], columns),
        "",
    ]
    if judging.PENDING:
        text += [
            "## Figures waiting for an API (hooks)",
            "",
            "| Target | Metric | Goal | Waiting for |",
            "|---|---|---|---|",
            *(f"| {t} | {m} | {g} | {w} |" for t, m, g, w in judging.PENDING),
            "",
        ]
    loads = [
        float(run["loadavg_1m"])
        for by_impl in results.values()
        for runs in by_impl.values()
        for run in runs
        if "loadavg_1m" in run
    ]
    if loads:
        text += [
            f"1-minute load average at the start of each worker: {judging.spread(loads, 2)} "
            f"on {facts['nproc']} CPUs (other work on the machine shows up here).",
            "",
        ]
    return "\n".join(text)


def _headline(verdict: judging.Judgement) -> str:
    targets = [r for r in verdict.rows if r.judged and not r.integrity]
    checks = [r for r in verdict.rows if r.integrity]
    met = sum(1 for r in targets if r.verdict == judging.MET)
    noise = sum(1 for r in targets if r.verdict == judging.NOISE)
    missed = sum(1 for r in targets if r.verdict == judging.MISSED)
    checks_ok = sum(1 for r in checks if r.verdict == judging.MET)
    return (
        f"{met} of {len(targets)} judged targets met, {missed} missed, {noise} within noise; "
        f"{checks_ok} of {len(checks)} integrity checks passed; exit status {verdict.exit_code}"
    )


def _is_full(args: argparse.Namespace) -> bool:
    return not (args.quick or args.only or args.impl or args.no_write or args.reps < DEFAULT_REPS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: one short repetition")
    parser.add_argument(
        "--reps", type=int, default=None, help=f"repetitions (default {DEFAULT_REPS}; quick 1)"
    )
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), help="scenario(s)")
    parser.add_argument("--impl", action="append", choices=IMPLS, help="only these (repeatable)")
    parser.add_argument(
        "--timeout", type=int, default=WORKER_TIMEOUT, help="seconds before a worker counts as hung"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone"
    )
    parser.add_argument(
        "--rejudge", type=Path, metavar="JSON", help="judge a saved latest.json without running"
    )
    parser.add_argument(
        "--selftest", action="store_true", help="check that the judge fails closed (pytest)"
    )
    parser.add_argument(
        "--trace-rollover",
        type=int,
        metavar="N",
        help="run the rollover N times with tracing and explain slow calls (rollover_trace.py)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.selftest:
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(HERE / "test_judge.py"),
        ]
        return subprocess.run(command, cwd=ROOT, check=False).returncode
    if args.trace_rollover:
        import rollover_trace

        return rollover_trace.main(["--runs", str(args.trace_rollover), *rest])
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.reps is None:
        args.reps = 1 if args.quick else DEFAULT_REPS
    impls = tuple(args.impl) if args.impl else IMPLS
    if args.rejudge:
        saved = json.loads(args.rejudge.read_text())
        results, plan, facts = saved["results"], saved["plan"], saved["machine"]
        for key in ("quick", "reps"):
            setattr(args, key, saved["args"][key])
        args.no_write = True
        took = float(saved.get("took_s", 0))
    else:
        if os.environ.get("BENCH_BREAK"):
            print(
                f"bench/run: BENCH_BREAK={os.environ['BENCH_BREAK']}: a deliberately broken run",
                file=sys.stderr,
            )
        plan = plan_for(args.reps, args.only, impls)
        started = time.monotonic()
        native_before = _native_mtime()
        results = run_all(plan, args.reps, args.quick, args.timeout)
        took = time.monotonic() - started
        facts = machine()
        if _native_mtime() != native_before:
            facts["native_built"] += " (**rebuilt during this run: the figures mix two builds**)"
    verdict = judging.judge(results, plan, quick=args.quick)
    text = report(results, verdict, facts, args, took)
    print()
    print(text)
    if not args.rejudge:
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        (out / "latest.md").write_text(text)
        saved = {
            "machine": facts,
            "args": vars(args) | {"rejudge": None},
            "plan": plan,
            "took_s": took,
            "results": results,
        }
        (out / "latest.json").write_text(json.dumps(saved, indent=1, default=str))
        full = _is_full(args)
        if full:
            (HERE / "RESULTS.md").write_text(text)
        print(f"written: {out / 'latest.md'}" + (f", {HERE / 'RESULTS.md'}" if full else ""))
    if verdict.exit_code:
        kind = "FAILED" if verdict.exit_code == 1 else "NOT DEMONSTRATED"
        print(
            f"bench/run: {kind} (exit {verdict.exit_code}): {_headline(verdict)}", file=sys.stderr
        )
        for reason in verdict.reasons():
            print(f"  - {reason}", file=sys.stderr)
    return verdict.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
