"""Judges benchmark results against the targets of issue 4, failing closed.

Pure functions of the results ``runner.py`` collects (scenario -> implementation
-> one dict per repetition, ``{"error": ...}`` for a repetition that failed or
hung), so ``test_judge.py`` can feed it synthetic results.

The rules (``bench/README.md``, "Judging"):

- A scenario is *broken* when any repetition of any implementation in it
  errored or hung, ran fewer times than planned, or ran another exchanger than
  the one under test (provenance). Every judged row of a broken scenario is a
  miss, whatever its figures.
- Integrity rows are judged like targets: repetitions completed, exchanger
  class, emulator internal errors, wrong-audience tokens, exact caller and
  token counts.
- Counts and worst cases are judged on every repetition.
- Ratios and medians are judged on a 95 % confidence interval: the percentile
  bootstrap (``RESAMPLES`` resamples of the repetitions, seeded with ``SEED``)
  of the median of the per-repetition values; ratios are paired, one ratio per
  repetition (the two implementations ran back to back). A CI on the right
  side of the goal is met, on the wrong side missed, straddling it *within
  noise*; fewer than ``MIN_REPS`` repetitions are always within noise. A
  repetition that completed without recording the figure is a miss.
- Exit status: 1 when any judged row is missed (the reasons are printed);
  otherwise 3 when any is within noise (a smoke run excepted); otherwise 0.
"""

from __future__ import annotations

import functools
import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Results = dict[str, dict[str, list[dict[str, Any]]]]  # scenario -> impl -> one dict per rep
Plan = dict[str, dict[str, int]]  # scenario -> impl -> repetitions planned

MIN_REPS = 10
CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 4458  # google/adk-python#4458

IMPLS = ("stock", "ours", "gauth", "adk1")
JUDGED_IMPLS = ("stock", "ours")  # the comparison under test
ADK_STOCK = (
    "google.adk.tools.openapi_tool.auth.credential_exchangers."
    "service_account_exchanger.ServiceAccountCredentialExchanger"
)
OURS = "adk_token_exchange.exchanger.ServiceAccountExchanger"
GOOGLE_AUTH = (
    "google.oauth2.service_account.IDTokenCredentials",
    "google.auth.compute_engine.credentials.IDTokenCredentials",
)
# What each implementation's managers must hold, and whether our package may be loaded.
EXPECTED: dict[str, tuple[tuple[str, ...], bool]] = {
    "stock": ((ADK_STOCK,), False),
    "adk1": ((ADK_STOCK,), False),
    "ours": ((OURS,), True),
    "gauth": (GOOGLE_AUTH, False),
}
ID_TOKEN_AUTH = "adk_token_exchange.httpx_auth.IdTokenAuth"
OURS_VERIFIER = "adk_token_exchange.server._verifiers.IdTokenVerifier"
GOOGLE_AUTH_VERIFY = "google.oauth2.id_token.verify_oauth2_token"
# Scenarios where something other than an exchanger answers: what must have run there.
EXPECTED_IN: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {
    "httpx_auth": {"ours": ((ID_TOKEN_AUTH,), True), "gauth": ((GOOGLE_AUTH[0],), False)},
    "mcp_rotation": {"ours": ((ID_TOKEN_AUTH,), True), "stock": ((ADK_STOCK,), False)},
    "verify": {"ours": ((OURS_VERIFIER,), True), "gauth": ((GOOGLE_AUTH_VERIFY,), False)},
}
PROVENANCE: dict[str, tuple[str, str]] = {  # scenario -> (metric, goal)
    "httpx_auth": (
        "class that put the token on the request (provenance)",
        "ours: `IdTokenAuth`; google-auth: `IDTokenCredentials`",
    ),
    "mcp_rotation": (
        "what authenticated the MCP requests (provenance)",
        "ours: `IdTokenAuth` on the factory's clients and no tool credential; "
        "stock: ADK's exchanger",
    ),
    "verify": (
        "verifier that ran (provenance)",
        "ours: `IdTokenVerifier`; google-auth: `verify_oauth2_token`",
    ),
}


def expected_classes(scenario: str, impl: str) -> tuple[tuple[str, ...], bool]:
    """The classes ``impl`` must run in ``scenario``, and whether our package may be loaded."""
    return EXPECTED_IN.get(scenario, {}).get(impl, EXPECTED[impl])


MET, MISSED, NOISE, REPORT = "met", "**missed**", "within noise", "report"
DASH = "\u2013"
NOT_MEASURED = "\u2014"


@dataclass
class Row:
    scenario: str
    target: str
    metric: str
    cells: dict[str, str]
    goal: str = ""
    verdict: str | None = None  # None: a figure, not judged; REPORT: shown with its goal
    reason: str = ""
    integrity: bool = False

    @property
    def judged(self) -> bool:
        return self.verdict in (MET, MISSED, NOISE)


@dataclass
class Judgement:
    rows: list[Row]
    broken: dict[str, list[str]]  # scenario -> why its judged rows are misses
    quick: bool
    findings: list[str] = field(default_factory=list)

    @property
    def missed(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == MISSED]

    @property
    def noise(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == NOISE]

    @property
    def exit_code(self) -> int:
        if self.missed:
            return 1
        if self.noise and not self.quick:
            return 3
        return 0

    def reasons(self) -> list[str]:
        """One line per problem, for stderr and the report."""
        out = [f"{s}: {'; '.join(why)}" for s, why in self.broken.items() if why]
        # Integrity misses and the rows they broke are named by their scenario's line.
        out += [
            f"missed: {r.target}: {r.metric}" + (f" ({r.reason})" if r.reason else "")
            for r in self.missed
            if not r.integrity and not r.reason.startswith("scenario broken")
        ]
        out += [f"within noise: {r.target}: {r.metric} ({r.reason})" for r in self.noise]
        return out


# -- statistics -----------------------------------------------------------------------


def bootstrap_median(
    xs: list[float], *, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float, float]:
    """Median of ``xs`` and its percentile-bootstrap CI at ``CONFIDENCE``."""
    return _bootstrap_median(tuple(xs), resamples, seed)


@functools.lru_cache(maxsize=4096)
def _bootstrap_median(
    xs: tuple[float, ...], resamples: int, seed: int
) -> tuple[float, float, float]:
    # Seeded, so a pure function of its arguments: cached (the self-test judges
    # the same figures dozens of times).
    rng = random.Random(seed)
    n = len(xs)
    medians = sorted(statistics.median(rng.choices(xs, k=n)) for _ in range(resamples))
    tail = (1 - CONFIDENCE) / 2
    lo = medians[int(tail * resamples)]
    hi = medians[min(resamples - 1, int((1 - tail) * resamples))]
    return statistics.median(xs), lo, hi


def ci_verdict(lo: float, hi: float, n: int, ok: Callable[[float], bool]) -> tuple[str, str]:
    if n < MIN_REPS:
        return NOISE, f"{n} repetition(s), fewer than the {MIN_REPS} a CI needs"
    if ok(lo) and ok(hi):
        return MET, ""
    if not ok(lo) and not ok(hi):
        return MISSED, "the whole 95 % CI is on the wrong side of the goal"
    return NOISE, "the 95 % CI straddles the goal"


# -- formatting -----------------------------------------------------------------------


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    if abs(x) >= 100 or digits == 0:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def spread(xs: list[float], digits: int = 1) -> str:
    """``median (min-max)``; a single value alone."""
    if not xs:
        return "n/a"
    mid = fmt(statistics.median(xs), digits)
    if len(xs) == 1 or min(xs) == max(xs):
        return mid
    return f"{mid} ({fmt(min(xs), digits)}{DASH}{fmt(max(xs), digits)})"


def with_ci(est: float, lo: float, hi: float, digits: int) -> str:
    return f"{fmt(est, digits)} (CI {fmt(lo, digits)}{DASH}{fmt(hi, digits)})"


def short_class(path: str) -> str:
    module, _, name = path.rpartition(".")
    package = module.split(".")[0] if module else ""
    return f"{package}…{name}" if package else name


# -- the judge --------------------------------------------------------------------------


class Judge:
    """Builds the rows, scenario by scenario; see the module docstring for the rules."""

    def __init__(self, results: Results, plan: Plan, quick: bool) -> None:
        self.results = results
        self.plan = plan
        self.quick = quick
        self.rows: list[Row] = []
        self.broken: dict[str, list[str]] = {}
        self.findings: list[str] = []

    # data access

    def planned(self, scenario: str) -> dict[str, int]:
        return self.plan.get(scenario, {})

    def runs(self, scenario: str, impl: str) -> list[dict[str, Any]]:
        return self.results.get(scenario, {}).get(impl, [])

    def ok_runs(self, scenario: str, impl: str) -> list[dict[str, Any]]:
        return [r for r in self.runs(scenario, impl) if "error" not in r]

    def values(self, scenario: str, impl: str, key: str) -> list[float]:
        out = []
        for run in self.ok_runs(scenario, impl):
            value = run.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(float(value))
        return out

    def cells(
        self, scenario: str, key: str, digits: int, keys: dict[str, str] | None = None
    ) -> dict[str, str]:
        """One cell per implementation; ``keys`` names another figure for some of them
        (the comparison's own figure, where the two sides measure different calls)."""
        out = {}
        for impl in IMPLS:
            if impl not in self.planned(scenario):
                out[impl] = NOT_MEASURED
            elif not self.ok_runs(scenario, impl):
                out[impl] = "failed"
            else:
                xs = self.values(scenario, impl, (keys or {}).get(impl, key))
                out[impl] = spread(xs, digits) if xs else NOT_MEASURED
        return out

    def reps(self, scenario: str, *impls: str) -> int:
        """Repetitions planned for all of ``impls``: how many values a CI row must get."""
        return min((self.planned(scenario).get(i, 0) for i in impls), default=0)

    # rows

    def add(self, row: Row) -> Row:
        if row.judged and self.broken.get(row.scenario):
            row.verdict = MISSED
            why = self.broken[row.scenario]
            row.reason = f"scenario broken: {why[0]}" + (
                f" (+{len(why) - 1} more)" if len(why) > 1 else ""
            )
        self.rows.append(row)
        return row

    def figure(
        self,
        scenario: str,
        target: str,
        metric: str,
        key: str,
        digits: int = 1,
        goal: str = "",
        keys: dict[str, str] | None = None,
    ) -> Row:
        verdict = REPORT if goal else None
        cells = self.cells(scenario, key, digits, keys)
        return self.add(Row(scenario, target, metric, cells, goal, verdict))

    def every_rep(
        self,
        scenario: str,
        target: str,
        metric: str,
        key: str,
        goal: str,
        ok: Callable[[float, dict[str, Any]], bool],
        impls: Iterable[str] = ("ours",),
        digits: int = 1,
        ok_for: dict[str, Callable[[float, dict[str, Any]], bool]] | None = None,
    ) -> Row:
        """Judged on every repetition of ``impls``: one bad or missing value is a miss.

        ``ok_for``: another check for some implementations (the two sides of a
        comparison must show different counts).
        """
        failures = []
        for impl in impls:
            if impl not in self.planned(scenario):
                continue
            check = (ok_for or {}).get(impl, ok)
            runs = self.ok_runs(scenario, impl)
            if not runs:
                failures.append(f"{impl}: no completed repetition")
            for rep, run in enumerate(runs, 1):
                value = run.get(key)
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    failures.append(f"{impl} rep {rep}: {key} not recorded")
                elif not check(float(value), run):
                    failures.append(f"{impl} rep {rep}: {fmt(float(value), digits)}")
        verdict, reason = (MISSED, "; ".join(failures[:3])) if failures else (MET, "")
        row = Row(
            scenario, target, metric, self.cells(scenario, key, digits), goal, verdict, reason
        )
        return self.add(row)

    def median_ci(
        self,
        scenario: str,
        target: str,
        metric: str,
        per_rep: list[float],
        goal: str,
        ok: Callable[[float], bool],
        digits: int = 2,
        cells: dict[str, str] | None = None,
        judged: bool = True,
        reps: int | None = None,
    ) -> Row:
        """``per_rep``: ours' value per repetition (a paired ratio, or a figure).

        ``reps``: how many values there must be; fewer (a figure a repetition did
        not record) is a miss, not a smaller sample.
        """
        shown = dict(cells) if cells else {impl: NOT_MEASURED for impl in IMPLS}
        if not per_rep:
            shown["ours"] = "n/a"
            verdict, reason = (MISSED, "no completed repetition") if judged else (REPORT, "")
        else:
            est, lo, hi = bootstrap_median(per_rep)
            shown["ours"] = with_ci(est, lo, hi, digits)
            verdict, reason = ci_verdict(lo, hi, len(per_rep), ok) if judged else (REPORT, "")
            if judged and reps is not None and len(per_rep) < reps:
                verdict = MISSED
                reason = f"the figure is missing from {reps - len(per_rep)} of {reps} repetitions"
        return self.add(Row(scenario, target, metric, shown, goal, verdict, reason))

    def paired(
        self, scenario: str, key: str, num: str, den: str, den_key: str | None = None
    ) -> list[float]:
        """One ratio per repetition in which both ran: ``num[key] / den[den_key or key]``."""
        out = []
        for a, b in zip(self.runs(scenario, num), self.runs(scenario, den), strict=False):
            x, y = a.get(key), b.get(den_key or key)
            if "error" in a or "error" in b or not x or not y:
                continue
            out.append(float(x) / float(y))
        return out

    # integrity

    def integrity(self, scenario: str, label: str, *, tokens: bool = True) -> None:
        """Completed repetitions, provenance, emulator errors, wrong audiences: judged rows."""
        planned = self.planned(scenario)
        if not planned:
            return
        why: list[str] = []
        completed: dict[str, str] = {}
        for impl, expected in planned.items():
            runs = self.runs(scenario, impl)
            bad = [(rep, r) for rep, r in enumerate(runs, 1) if "error" in r]
            for rep, run in bad:
                state = "hung" if run.get("hung") else "failed"
                why.append(f"{impl} rep {rep} {state}: {str(run['error'])[:200]}")
            if len(runs) < expected:
                why.append(f"{impl}: {len(runs)} of {expected} repetitions ran")
            completed[impl] = f"{len(runs) - len(bad)}/{expected}"
        cells = {impl: completed.get(impl, NOT_MEASURED) for impl in IMPLS}
        self.rows.append(
            Row(
                scenario,
                label,
                "repetitions completed (none errored or hung)",
                cells,
                "all, every implementation",
                MISSED if why else MET,
                "; ".join(why[:3]),
                integrity=True,
            )
        )
        # Provenance: the stock side ran ADK's class, ours ran ours, and nothing else.
        wrong: list[str] = []
        held: dict[str, str] = {}
        for impl in planned:
            classes_expected, ours_loaded = expected_classes(scenario, impl)
            seen: set[str] = set()
            for rep, run in enumerate(self.runs(scenario, impl), 1):
                if "error" in run:
                    continue
                classes = run.get("exchangers")
                if not classes:
                    wrong.append(f"{impl} rep {rep}: exchanger class not recorded")
                    continue
                seen.update(classes)
                stray = [c for c in classes if c not in classes_expected]
                if stray:
                    wrong.append(f"{impl} rep {rep} held {stray[0]}")
                if run.get("ours_loaded") is not ours_loaded:
                    state = "loaded" if run.get("ours_loaded") else "not loaded"
                    wrong.append(f"{impl} rep {rep}: adk_token_exchange {state}")
                version = str(run.get("adk_version", ""))
                if impl == "adk1" and not version.startswith("1."):
                    wrong.append(f"adk1 rep {rep} ran ADK {version or '?'}")
                if impl == "stock" and version.startswith("1."):
                    wrong.append(f"stock rep {rep} ran ADK {version}")
            held[impl] = ", ".join(short_class(c) for c in sorted(seen)) or "n/a"
        if wrong:
            why.insert(0, "exchanger under test is not the one named: " + wrong[0])
        metric, goal = PROVENANCE.get(
            scenario,
            (
                "exchanger class the managers held (provenance)",
                "stock: ADK's; ours: adk_token_exchange's",
            ),
        )
        self.rows.append(
            Row(
                scenario,
                label,
                metric,
                {impl: held.get(impl, NOT_MEASURED) for impl in IMPLS},
                goal,
                MISSED if wrong else MET,
                "; ".join(wrong[:3]),
                integrity=True,
            )
        )
        if scenario != "import":
            self._zero(
                scenario,
                label,
                "emulator internal errors",
                "emulator_internal_errors",
                planned,
                why,
            )
            if tokens:
                self._zero(
                    scenario,
                    label,
                    "tokens not an ID token for the audience asked",
                    "wrong_audience",
                    [i for i in planned if i != "adk1"],
                    why,
                )
        self.broken[scenario] = why

    def _zero(
        self,
        scenario: str,
        label: str,
        metric: str,
        key: str,
        impls: Iterable[str],
        why: list[str],
    ) -> None:
        bad = []
        for impl in impls:
            for rep, run in enumerate(self.runs(scenario, impl), 1):
                if "error" in run:
                    continue
                value = run.get(key)
                if value is None:
                    bad.append(f"{impl} rep {rep}: {key} not recorded")
                elif value:
                    bad.append(f"{impl} rep {rep}: {value}")
        why.extend(f"{metric}: {b}" for b in bad)
        self.rows.append(
            Row(
                scenario,
                label,
                metric,
                self.cells(scenario, key, 0),
                "0 (every rep" + (", ADK 1.24 reported" if key == "wrong_audience" else "") + ")",
                MISSED if bad else MET,
                "; ".join(bad[:3]),
                integrity=True,
            )
        )


def judge(results: Results, plan: Plan, quick: bool = False) -> Judgement:
    j = Judge(results, plan, quick)
    _warm(j)
    for path in ("key", "metadata"):
        _cold(j, path)
    for scenario, label in (
        ("burst_loop", "one loop"),
        ("burst_threads", "8 threads, a loop each"),
    ):
        _burst(j, scenario, label)
    _rollover(j)
    for path in ("key", "metadata"):
        _audiences(j, path)
    _import(j)
    _rss(j)
    _coroutine(j)
    _httpx_auth(j)
    _mcp_rotation(j)
    _verify(j)
    _adk1_findings(j)
    return Judgement(j.rows, j.broken, quick, j.findings)


def _warm(j: Judge) -> None:
    s, t = "warm", "1 warm"
    if not j.planned(s):
        return
    j.integrity(s, t)
    for key, what in (
        ("manager_cpu_us", "deep copy of the tool's credential, as ADK passes it; CPU"),
        ("manager_json_cpu_us", "credential rebuilt from JSON before each call; CPU"),
        ("manager_us", "deep copy; wall"),
    ):
        j.figure(s, t, f"`CredentialManager.get_auth_credential`, µs/call ({what})", key, 2)
    for key, what, judged in (
        ("manager_cpu_us", "deep copy as ADK passes it, CPU", True),
        ("manager_json_cpu_us", "credential rebuilt from JSON per call, CPU", True),
        ("manager_us", "deep copy, wall", False),
    ):
        j.median_ci(
            s,
            t,
            f"ratio ours / stock, paired per repetition ({what})",
            j.paired(s, key, "ours", "stock"),
            "≤ 1.02" if judged else "report",
            lambda x: x <= 1.02,
            digits=3,
            judged=judged,
            reps=j.reps(s, "ours", "stock"),
        )
    for key, what in (
        ("exchanger_cpu_us", "fresh deep copy per call"),
        ("exchanger_json_cpu_us", "credential rebuilt from JSON per call"),
    ):
        j.median_ci(
            s,
            t,
            f"exchanger call alone, {what}, µs CPU (stock: sync `exchange_credential`;"
            " ours: awaited `exchange`)",
            j.values(s, "ours", key),
            "ours ≤ 5",
            lambda x: x <= 5,
            cells=j.cells(s, key, 2),
            reps=j.reps(s, "ours"),
        )
    # Judged on its own, in a tight loop of awaits, by the `coroutine` scenario.
    j.figure(
        s,
        t,
        "ours' awaited `exchange` alone, same credential object every call, µs CPU",
        "exchanger_same_cpu_us",
        2,
        goal="≤ 1 (judged in 1 coroutine)",
    )
    j.figure(s, t, "exchanger call alone, fresh deep copy, µs wall", "exchanger_us", 2)
    j.figure(
        s,
        t,
        "sync `exchange_credential` alone (OpenAPI tools' path), µs CPU",
        "exchanger_sync_cpu_us",
        2,
    )


def _cold(j: Judge, path: str) -> None:
    s, t = f"cold_{path}", f"2 cold ({path})"
    if not j.planned(s):
        return
    j.integrity(s, t)
    exchanges = 3 if j.quick else 5
    j.every_rep(
        s,
        t,
        "exchanges answered",
        "callers",
        f"{exchanges} (every rep)",
        lambda v, r: v == exchanges,
        impls=("stock", "ours", "gauth", "adk1"),
        digits=0,
    )
    for when, key in (("the process's first exchange", "first"), ("later exchanges", "later")):
        j.figure(s, t, f"worst loop lag during {when}, ms, raw", f"{key}_lag_ms")
        j.every_rep(
            s,
            t,
            f"worst loop lag during {when}, ms, excluding OS run-queue wait",
            f"{key}_own_lag_ms",
            "ours ≤ 5 (every rep)",
            lambda v, r: v <= 5,
        )
    j.figure(
        s, t, "worst loop lag outside exchanges (the machine's own jitter), ms", "baseline_lag_ms"
    )
    j.figure(s, t, "first exchange of the process, ms", "first_exchange_ms")
    j.figure(s, t, "later cold exchange (median), ms", "later_exchange_ms")
    j.figure(s, t, "exchanges that raised (ADK 1.24: by design)", "failed_exchanges", 0)


def _burst(j: Judge, s: str, label: str) -> None:
    t = f"3 burst ({label})"
    if not j.planned(s):
        return
    j.integrity(s, t)
    j.every_rep(
        s,
        t,
        "callers answered",
        "callers",
        "100 (every rep)",
        lambda v, r: v == 100,
        impls=("stock", "ours", "gauth", "adk1"),
        digits=0,
    )
    j.every_rep(
        s,
        t,
        "upstream token requests for 100 callers",
        "token_requests",
        "ours = 1 (every rep)",
        lambda v, r: v == 1,
        digits=0,
    )
    j.every_rep(
        s,
        t,
        "distinct tokens handed to the 100 callers",
        "distinct_tokens",
        "ours = 1 (every rep)",
        lambda v, r: v == 1,
        digits=0,
    )
    j.median_ci(
        s,
        t,
        "wall time / one cold request",
        j.values(s, "ours", "wall_over_single"),
        "ours ≤ 1.5",
        lambda x: x <= 1.5,
        cells=j.cells(s, "wall_over_single", 2),
        reps=j.reps(s, "ours"),
    )
    j.figure(s, t, "wall time, ms", "wall_ms")
    j.figure(s, t, "exchanges that raised (ADK 1.24: by design)", "failed_exchanges", 0)


def _rollover_bound(run: dict[str, Any]) -> int:
    """Upstream requests a single-flight refresh-ahead cache may make in the run.

    One per refresh interval: a token of lifetime L is refreshed after 3/4 of
    what is left of it (JWT ``exp`` is whole seconds, so at least L - 1), plus
    one for a refresh in flight at the end.
    """
    lifetime = float(run.get("token_lifetime_s", 4))
    seconds = float(run.get("seconds", 15))
    interval = max(0.1, 0.75 * (lifetime - 1))
    return int(seconds / interval) + 1


def _rollover(j: Judge) -> None:
    s, t = "rollover", "4 rollover"
    if not j.planned(s):
        return
    j.integrity(s, t)
    j.every_rep(
        s, t, "callers", "callers", "8 (every rep)", lambda v, r: v == 8, ("stock", "ours"), 0
    )
    j.every_rep(
        s,
        t,
        "max call latency, ms (injected: 100 ms)",
        "max_ms",
        "ours < 100 (every rep)",
        lambda v, r: v < 100,
        digits=2,
    )
    j.every_rep(
        s,
        t,
        "calls that waited ≥ 100 ms",
        "waited",
        "ours 0 (every rep)",
        lambda v, r: v == 0,
        digits=0,
    )
    j.every_rep(
        s,
        t,
        "expired tokens handed out",
        "expired",
        "0 (every rep)",
        lambda v, r: v == 0,
        ("stock", "ours"),
        0,
    )
    j.every_rep(
        s,
        t,
        "least time left on a token at hand-out, s",
        "min_remaining_s",
        "ours ≥ 0.1 (every rep)",
        lambda v, r: v >= 0.1,
        digits=2,
    )
    j.every_rep(
        s,
        t,
        "upstream token requests (rollover group)",
        "token_requests",
        "ours ≤ one per refresh interval (every rep)",
        lambda v, r: 1 <= v <= _rollover_bound(r),
        digits=0,
    )
    j.every_rep(
        s,
        t,
        "distinct tokens handed out (rollover group)",
        "distinct_tokens",
        "ours = requests + 1, or requests if one was in flight at the end (every rep)",
        lambda v, r: r.get("token_requests", -9) <= v <= r.get("token_requests", -9) + 1,
        digits=0,
    )
    j.every_rep(
        s,
        t,
        "distinct tokens handed to the control group (1 h tokens)",
        "control_distinct_tokens",
        "1 (every rep)",
        lambda v, r: v == 1 and r.get("control_token_requests") == 0,
        ("stock", "ours"),
        0,
    )
    j.median_ci(
        s,
        t,
        "p99 / control p99",
        j.values(s, "ours", "p99_over_control"),
        "ours ≤ 1.2",
        lambda x: x <= 1.2,
        cells=j.cells(s, "p99_over_control", 2),
        reps=j.reps(s, "ours"),
    )
    j.figure(s, t, "calls made", "calls", 0)
    j.figure(s, t, "p99 latency, µs", "p99_us")
    j.figure(
        s,
        t,
        "p99 latency of 4 control callers (1 h tokens) running alongside, µs",
        "control_p99_us",
    )
    j.figure(s, t, "worst loop lag during the run, ms (ticker alongside)", "worst_loop_lag_ms")


def _audiences(j: Judge, path: str) -> None:
    s, t = f"audiences_{path}", f"5 50 audiences ({path})"
    if not j.planned(s):
        return
    j.integrity(s, t)
    j.every_rep(
        s,
        t,
        "exchanges answered",
        "callers",
        "50 (every rep)",
        lambda v, r: v == 50,
        ("stock", "ours"),
        0,
    )
    stock_conn = j.values(s, "stock", "connections")
    j.every_rep(
        s,
        t,
        "new TCP connections for the 50 exchanges",
        "connections",
        "ours < stock's fewest (every rep)",
        lambda v, r: bool(stock_conn) and v < min(stock_conn),
        digits=0,
    )
    j.figure(s, t, "wall time for 50, ms", "wall_ms", 0)
    j.median_ci(
        s,
        t,
        "speed-up, stock wall / ours wall, paired per repetition",
        j.paired(s, "wall_ms", "stock", "ours"),
        "> 1",
        lambda x: x > 1,
        reps=j.reps(s, "ours", "stock"),
    )


def _import(j: Judge) -> None:
    s, t = "import", "6 import"
    if not j.planned(s):
        return
    j.integrity(s, t, tokens=False)
    j.figure(s, t, "ADK's own import (agents, auth, mcp_tool), ms", "adk_import_ms", 0)
    j.figure(s, t, "`import adk_token_exchange` after ADK, ms", "import_ms", goal="report")
    j.figure(s, t, "`install()`, ms", "install_ms", goal="report")
    j.figure(s, t, "RSS added by import + install, KiB", "rss_import_kib", goal="report")


def _rss(j: Judge) -> None:
    s, t = "rss", "6 memory"
    if not j.planned(s):
        return
    j.integrity(s, t)
    j.figure(s, t, "RSS after the warm exchanges, MiB", "rss_final_mib")
    j.every_rep(
        s,
        t,
        "RSS growth from 10 000 exchanges to the last, KiB",
        "growth_kib",
        "ours ≤ 1024 (every rep)",
        lambda v, r: v <= 1024,
        digits=0,
    )


def _coroutine(j: Judge) -> None:
    s, t = "coroutine", "1 coroutine"
    if not j.planned(s):
        return
    j.integrity(s, t)
    both = ("stock", "ours")
    awaits = 5 * 2_000 if j.quick else 20 * 10_000
    j.every_rep(
        s, t, "awaits timed", "calls", f"{awaits} (every rep)", lambda v, r: v == awaits, both, 0
    )
    j.every_rep(
        s,
        t,
        "upstream token requests (one cold exchange, then the cache)",
        "token_requests",
        "1 (every rep)",
        lambda v, r: v == 1,
        both,
        0,
    )
    j.every_rep(
        s,
        t,
        "ours' `exchange` is a coroutine function (`inspect.iscoroutinefunction`)",
        "coroutine_function",
        "ours 1 (every rep)",
        lambda v, r: v == 1,
        digits=0,
    )
    j.median_ci(
        s,
        t,
        "`await exchanger.exchange(credential, scheme)` alone, warm, same credential object,"
        " µs thread CPU per await (stock: its sync `exchange_credential` awaited in a coroutine,"
        " as `CredentialManager` does)",
        j.values(s, "ours", "exchange_cpu_us"),
        "ours ≤ 1",
        lambda x: x <= 1,
        cells=j.cells(s, "exchange_cpu_us", 2),
        reps=j.reps(s, "ours"),
    )
    j.median_ci(
        s,
        t,
        "ratio ours / stock per await, thread CPU, paired per repetition",
        j.paired(s, "exchange_cpu_us", "ours", "stock"),
        "report",
        lambda x: True,
        digits=3,
        judged=False,
    )
    j.figure(s, t, "the same, µs wall per await", "exchange_us", 2)
    j.figure(s, t, "the same, µs process CPU per await (all threads)", "exchange_process_us", 2)
    j.figure(s, t, "awaiting an empty `async def` (the floor), µs thread CPU", "empty_cpu_us", 3)
    j.figure(s, t, "first (cold) exchange of the process, ms", "first_exchange_ms")


def _httpx_auth(j: Judge) -> None:
    s, t = "httpx_auth", "7 httpx"
    if not j.planned(s):
        return
    j.integrity(s, t)
    both = ("gauth", "ours")
    j.every_rep(
        s,
        t,
        "responses other than 200",
        "not_ok",
        "0 (every rep)",
        lambda v, r: v == 0,
        both,
        0,
    )
    j.every_rep(
        s,
        t,
        "requests the server answered (of those sent)",
        "requests_served",
        "all sent (every rep)",
        lambda v, r: v == r.get("requests") and v > 0,
        both,
        0,
    )
    j.every_rep(
        s,
        t,
        "upstream token requests (warm: one for the whole run)",
        "token_requests",
        "1 (every rep)",
        lambda v, r: v == 1,
        both,
        0,
    )
    # Judged: what the auth adds beyond httpx's own auth flow, i.e. over a
    # constant-header httpx.Auth sending the same token in the same process
    # (paired per repetition). Any httpx.Auth pays the floor (~11 µs in situ).
    j.median_ci(
        s,
        t,
        "per-request cost of the auth beyond httpx's own auth flow: median latency with it"
        " minus with a constant-header `httpx.Auth` (same token, same client), µs wall"
        " (ours: `IdTokenAuth`; google-auth: `IDTokenCredentials` refreshed when not valid)",
        j.values(s, "ours", "auth_over_floor_us"),
        "ours ≤ 10",
        lambda x: x <= 10,
        cells=j.cells(s, "auth_over_floor_us", 1),
        digits=1,
        reps=j.reps(s, "ours"),
    )
    j.figure(
        s,
        t,
        "per-request overhead of the auth on an `httpx.AsyncClient`: median latency with it"
        " minus without, µs wall",
        "auth_overhead_us",
    )
    j.figure(s, t, "the same overhead, µs thread CPU", "auth_overhead_cpu_us")
    j.figure(
        s,
        t,
        "overhead of a constant-header `httpx.Auth` sending the same token (the floor), µs wall",
        "constant_overhead_us",
    )
    j.figure(s, t, "request without auth (median), µs wall", "plain_us", 0)
    j.figure(s, t, "request with the auth (median), µs wall", "auth_us", 0)
    j.figure(s, t, "first request (cold token), ms", "first_request_ms")


def _mcp_rotation(j: Judge) -> None:
    s, t = "mcp_rotation", "7 MCP"
    if not j.planned(s):
        return
    j.integrity(s, t)
    both = ("stock", "ours")
    rotations = 1 if j.quick else 5
    j.every_rep(
        s,
        t,
        "agent turns the tool answered (of the turns run)",
        "answered",
        "all (every rep)",
        lambda v, r: v == r.get("turns") and v > 0,
        both,
        0,
    )
    j.every_rep(
        s,
        t,
        "MCP requests refused at the gate (every call must get 200)",
        "refused",
        "0 (every rep)",
        lambda v, r: v == 0 and r.get("mcp_requests", 0) > 0,
        both,
        0,
    )
    j.every_rep(
        s,
        t,
        "token rotations the server saw (distinct tokens - 1)",
        "rotations",
        f"ours ≥ {rotations} (every rep)",
        lambda v, r: v >= rotations,
        digits=0,
    )
    j.every_rep(
        s,
        t,
        "MCP sessions opened (`initialize` requests at the server)",
        "sessions",
        "ours = 1 (every rep)",
        lambda v, r: v == 1,
        digits=0,
    )
    j.figure(s, t, "agent turns run", "turns", 0)
    j.figure(s, t, "seconds until the server had seen the rotations", "seconds")
    j.figure(s, t, "token lifetime, s", "token_lifetime_s", 0)
    j.figure(s, t, "upstream token requests", "token_requests", 0)
    j.figure(s, t, "MCP requests", "mcp_requests", 0)


def _verify(j: Judge) -> None:
    s, t = "verify", "7 verify"
    if not j.planned(s):
        return
    j.integrity(s, t)
    # Both sides' keys came from the emulator: ours fetched its key set once;
    # google-auth as documented fetched the certs on every call.
    j.every_rep(
        s,
        t,
        "key-set fetches from the emulator",
        "certs_fetches",
        "ours = 1; google-auth ≥ one per documented call (every rep)",
        lambda v, r: v == 1,
        ("ours", "gauth"),
        0,
        ok_for={"gauth": lambda v, r: v >= r.get("default_calls", float("inf"))},
    )
    versus = {"gauth": "cached_cpu_us"}
    j.median_ci(
        s,
        t,
        "warm (the caller's token again), µs thread CPU per verification: ours `verify`;"
        " google-auth `verify_oauth2_token`, certs cached",
        j.values(s, "ours", "warm_cpu_us"),
        "ours ≤ 5",
        lambda x: x <= 5,
        cells=j.cells(s, "warm_cpu_us", 2, versus),
        reps=j.reps(s, "ours"),
    )
    j.median_ci(
        s,
        t,
        "warm, ours `await verify_async`, µs thread CPU",
        j.values(s, "ours", "warm_async_cpu_us"),
        "ours ≤ 5",
        lambda x: x <= 5,
        cells=j.cells(s, "warm_async_cpu_us", 2),
        reps=j.reps(s, "ours"),
    )
    j.median_ci(
        s,
        t,
        "speed-up warm, google-auth (certs cached) / ours `verify`, thread CPU,"
        " paired per repetition",
        j.paired(s, "cached_cpu_us", "gauth", "ours", den_key="warm_cpu_us"),
        "> 1",
        lambda x: x > 1,
        reps=j.reps(s, "ours", "gauth"),
    )
    j.figure(
        s,
        t,
        "fresh token each call (signature checked), µs thread CPU: ours `verify`;"
        " google-auth, certs cached",
        "fresh_cpu_us",
        keys={"gauth": "cached_fresh_cpu_us"},
    )
    j.median_ci(
        s,
        t,
        "speed-up fresh token, google-auth (certs cached) / ours, thread CPU, paired",
        j.paired(s, "cached_fresh_cpu_us", "gauth", "ours", den_key="fresh_cpu_us"),
        "report",
        lambda x: True,
        judged=False,
    )
    j.figure(
        s,
        t,
        "google-auth `verify_oauth2_token` as documented (new `Request`, certs fetched"
        " every call), µs wall",
        "default_us",
        0,
    )
    j.figure(
        s,
        t,
        "warm, µs wall: ours `verify`; google-auth, certs cached",
        "warm_us",
        2,
        keys={"gauth": "cached_us"},
    )
    j.figure(s, t, "first verification (cold key fetch), ms", "first_verification_ms")


def _adk1_findings(j: Judge) -> None:
    """What ADK 1.24.1's stock exchanger did with an ID-token request: the finding, not an error."""
    for scenario in ("cold_key", "cold_metadata", "burst_loop", "burst_threads"):
        runs = j.ok_runs(scenario, "adk1")
        if not runs:
            continue
        kinds = sorted({str(r.get("token_kind")) for r in runs})
        wrong = sum(int(r.get("wrong_audience", 0)) for r in runs)
        handed = sum(int(r.get("callers", 0)) for r in runs)
        failure = next((r["failure"] for r in runs if r.get("failure")), None)
        j.findings.append(
            f"ADK 1.24.1 stock, {scenario}: {wrong} of {handed} answers were not an ID token "
            f"for the audience (handed out: {', '.join(kinds)})"
            + (f"; first error: {failure}" if failure else "")
        )


# -- pending figures (hooks) -----------------------------------------------------------

# Figures for features in progress: (target, metric, goal, waiting for). Each
# becomes a worker scenario and judged rows here once its API exists
# (bench/README.md, "Adding a figure"). None is waiting now.
PENDING: list[tuple[str, str, str, str]] = []
