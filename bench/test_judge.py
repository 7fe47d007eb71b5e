"""Self-test: the benchmark judge fails closed. Cheap (no worker, no emulator): CI runs it.

``bench/run --selftest`` or ``pytest bench/test_judge.py``. Each test feeds
``judge.py`` synthetic results, a healthy set with one thing broken, and checks
the verdict and the exit status ``bench/run`` would return.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import judge  # noqa: E402
import runner  # noqa: E402

REPS = 10
PLAN = runner.plan_for(REPS, None, runner.IMPLS)


def _figures(scenario: str, impl: str, rep: int) -> dict[str, Any]:
    """Plausible figures of a healthy run; a little spread between repetitions."""
    wiggle = 0.01 * (rep % 3)
    slow = impl != "ours"
    if scenario == "warm":
        us = 20.0 if slow else 19.0
        return {
            "manager_cpu_us": us + wiggle,
            "manager_json_cpu_us": us + 0.5 + wiggle,
            "manager_us": us + wiggle,
            "exchanger_cpu_us": 0.9 + wiggle,
            "exchanger_json_cpu_us": 1.5 + wiggle,
            "exchanger_same_cpu_us": 0.8,
            "exchanger_us": 0.9,
            "exchanger_sync_cpu_us": 0.7,
            "token_requests": 1,
        }
    if scenario.startswith("cold_"):
        lag = 110.0 if slow else 1.0 + wiggle
        return {
            "first_lag_ms": lag,
            "later_lag_ms": lag,
            "first_own_lag_ms": lag,
            "later_own_lag_ms": lag,
            "baseline_lag_ms": 0.2,
            "first_exchange_ms": 110.0,
            "later_exchange_ms": 104.0,
            "callers": 5,
            "failed_exchanges": 5 if impl == "adk1" else 0,
            "token_kind": "none" if impl == "adk1" else "id",
            "wrong_audience": 5 if impl == "adk1" else 0,
        }
    if scenario.startswith("burst_"):
        return {
            "callers": 100,
            "token_requests": 8 if slow and scenario == "burst_threads" else 1,
            "distinct_tokens": 1,
            "wall_over_single": (2.6 if slow else 1.1) + wiggle,
            "wall_ms": 120.0,
            "failed_exchanges": 0,
            "token_kind": "id",
            "wrong_audience": 100 if impl == "adk1" else 0,
        }
    if scenario == "rollover":
        return {
            "callers": 8,
            "max_ms": 141.0 if slow else 1.6 + wiggle,
            "waited": 150 if slow else 0,
            "expired": 0,
            "min_remaining_s": 3.0 if slow else 0.8,
            "token_requests": 150 if slow else 6,
            "distinct_tokens": 150 if slow else 7,
            "control_distinct_tokens": 1,
            "control_token_requests": 0,
            "p99_over_control": 700.0 if slow else 0.8 + wiggle,
            "calls": 30000,
            "p99_us": 55.0,
            "control_p99_us": 60.0,
            "worst_loop_lag_ms": 3.0,
            "token_lifetime_s": 4,
            "seconds": 15.0,
        }
    if scenario.startswith("audiences_"):
        return {
            "callers": 50,
            "connections": 50 if slow else 0,
            "wall_ms": (2500.0 if slow else 1100.0) + 10 * rep,
        }
    if scenario == "import":
        return {"adk_import_ms": 900.0, "import_ms": 1.6, "install_ms": 3.8, "rss_import_kib": 3468}
    if scenario == "rss":
        return {"rss_final_mib": 90.0, "growth_kib": 0}
    if scenario == "coroutine":
        return {
            "exchange_cpu_us": (0.75 if slow else 0.9) + wiggle,
            "exchange_us": 1.0,
            "exchange_process_us": 0.9,
            "empty_cpu_us": 0.1,
            "first_exchange_ms": 30.0,
            "calls": 200_000,
            **({} if slow else {"coroutine_function": 1}),
            "token_requests": 1,
        }
    if scenario == "httpx_auth":
        return {
            "auth_overhead_us": (29.0 if slow else 6.0) + wiggle,
            "auth_over_floor_us": (19.0 if slow else 3.0) + wiggle,
            "auth_over_floor_cpu_us": 3.0,
            "auth_overhead_cpu_us": 5.0,
            "constant_overhead_us": 3.0,
            "plain_us": 600.0,
            "auth_us": 606.0,
            "first_request_ms": 30.0,
            "requests": 6901,
            "requests_served": 6901,
            "not_ok": 0,
            "token_requests": 1,
        }
    if scenario == "mcp_rotation":
        return {
            "turns": 40,
            "answered": 40,
            "refused": 0,
            "mcp_requests": 120 if slow else 82,
            "sessions": 21 if slow else 1,
            "rotations": 20 if slow else 6,
            "distinct_tokens": 21 if slow else 7,
            "token_lifetime_s": 3,
            "token_requests": 120 if slow else 7,
        }
    if scenario == "verify":
        if impl == "gauth":
            return {
                "default_us": 3800.0,
                "cached_cpu_us": 57.0 + wiggle,
                "cached_us": 58.0,
                "cached_fresh_cpu_us": 63.0,
                "certs_fetches": 102,
                "default_calls": 101,
                "first_verification_ms": 98.0,
            }
        return {
            "warm_cpu_us": 1.6 + wiggle,
            "warm_us": 1.7,
            "warm_async_cpu_us": 2.2 + wiggle,
            "fresh_cpu_us": 27.0,
            "certs_fetches": 1,
            "first_verification_ms": 68.0,
        }
    raise AssertionError(scenario)


def _run(scenario: str, impl: str, rep: int) -> dict[str, Any]:
    result = _figures(scenario, impl, rep)
    classes, ours_loaded = judge.expected_classes(scenario, impl)
    result.update(
        exchangers=[classes[0]],
        ours_loaded=ours_loaded,
        adk_version="1.24.1" if impl == "adk1" else "2.13.0",
        loadavg_1m=0.5,
    )
    if scenario != "import":
        result["emulator_internal_errors"] = 0
        result.setdefault("wrong_audience", 0)
    return result


def healthy() -> judge.Results:
    return {
        scenario: {
            impl: [_run(scenario, impl, rep) for rep in range(n)] for impl, n in by_impl.items()
        }
        for scenario, by_impl in PLAN.items()
    }


def verdict_of(results: judge.Results, quick: bool = False) -> judge.Judgement:
    return judge.judge(results, PLAN, quick=quick)


def rows(j: judge.Judgement, scenario: str) -> list[judge.Row]:
    """The scenario's judged target rows (integrity rows name the failure themselves)."""
    return [r for r in j.rows if r.scenario == scenario and r.judged and not r.integrity]


def test_a_healthy_run_meets_every_judged_row_and_exits_zero() -> None:
    j = verdict_of(healthy())
    assert [r.metric for r in j.rows if r.judged and r.verdict != judge.MET] == []
    assert j.exit_code == 0


def test_an_errored_repetition_makes_every_judged_row_of_its_scenario_a_miss() -> None:
    results = healthy()
    results["warm"]["ours"][4] = {"error": "exit 1: Traceback ... RuntimeError"}
    j = verdict_of(results)
    assert {r.verdict for r in rows(j, "warm")} == {judge.MISSED}
    assert j.exit_code == 1
    assert any("ours rep 5 failed" in reason for reason in j.reasons())
    # Other scenarios are unaffected.
    assert {r.verdict for r in rows(j, "cold_key")} == {judge.MET}


def test_a_hung_repetition_is_a_miss_named_as_a_hang() -> None:
    results = healthy()
    results["rollover"]["ours"][9] = {"error": "hung: no result after 180 s", "hung": True}
    j = verdict_of(results)
    assert {r.verdict for r in rows(j, "rollover")} == {judge.MISSED}
    assert any("ours rep 10 hung" in reason for reason in j.reasons())
    assert j.exit_code == 1


def test_an_errored_stock_repetition_also_breaks_the_comparison() -> None:
    results = healthy()
    results["audiences_key"]["stock"][0] = {"error": "exit -9: killed"}
    j = verdict_of(results)
    assert {r.verdict for r in rows(j, "audiences_key")} == {judge.MISSED}


def test_fewer_repetitions_than_planned_is_a_miss() -> None:
    results = healthy()
    del results["burst_loop"]["ours"][-1]
    j = verdict_of(results)
    assert {r.verdict for r in rows(j, "burst_loop")} == {judge.MISSED}
    assert any("9 of 10 repetitions ran" in reason for reason in j.reasons())


def test_stock_provenance_on_the_ours_side_is_a_miss() -> None:
    """An install() that silently stopped working compares stock with stock."""
    results = healthy()
    for run in results["warm"]["ours"]:
        run.update(exchangers=[judge.ADK_STOCK], ours_loaded=True)
    j = verdict_of(results)
    provenance = next(r for r in j.rows if r.scenario == "warm" and "provenance" in r.metric)
    assert provenance.verdict == judge.MISSED
    assert {r.verdict for r in rows(j, "warm")} == {judge.MISSED}
    assert any("exchanger under test is not the one named" in reason for reason in j.reasons())
    assert j.exit_code == 1


def test_ours_loaded_on_the_stock_side_is_a_miss() -> None:
    results = healthy()
    results["cold_key"]["stock"][2]["ours_loaded"] = True
    j = verdict_of(results)
    assert {r.verdict for r in rows(j, "cold_key")} == {judge.MISSED}


def test_unrecorded_provenance_is_a_miss() -> None:
    results = healthy()
    del results["rss"]["ours"][0]["exchangers"]
    assert {r.verdict for r in rows(verdict_of(results), "rss")} == {judge.MISSED}


def test_the_stock_column_must_really_be_adk_2() -> None:
    results = healthy()
    results["warm"]["stock"][0]["adk_version"] = "1.24.1"
    assert verdict_of(results).exit_code == 1


def test_a_wrong_audience_is_a_miss() -> None:
    results = healthy()
    results["burst_threads"]["ours"][3]["wrong_audience"] = 1
    j = verdict_of(results)
    row = next(r for r in j.rows if r.scenario == "burst_threads" and "audience" in r.metric)
    assert row.verdict == judge.MISSED
    assert {r.verdict for r in rows(j, "burst_threads")} == {judge.MISSED}


def test_adk_1_24_wrong_audiences_are_a_finding_not_a_miss() -> None:
    j = verdict_of(healthy())
    assert j.exit_code == 0
    assert any("ADK 1.24.1 stock, cold_key: 15 of 15" in f for f in j.findings)


def test_emulator_internal_errors_are_a_miss() -> None:
    results = healthy()
    results["cold_metadata"]["gauth"][1]["emulator_internal_errors"] = 2
    assert {r.verdict for r in rows(verdict_of(results), "cold_metadata")} == {judge.MISSED}


def test_an_unrecorded_count_is_a_miss_not_a_pass() -> None:
    results = healthy()
    del results["cold_key"]["ours"][0]["emulator_internal_errors"]
    del results["burst_loop"]["ours"][0]["distinct_tokens"]
    j = verdict_of(results)
    assert {r.verdict for r in rows(j, "cold_key")} == {judge.MISSED}
    distinct = next(r for r in j.rows if r.scenario == "burst_loop" and "distinct" in r.metric)
    assert distinct.verdict == judge.MISSED


@pytest.mark.parametrize(
    ("key", "value", "metric"),
    [
        ("callers", 99, "callers answered"),
        ("distinct_tokens", 2, "distinct tokens"),
        ("token_requests", 2, "upstream token requests"),
    ],
)
def test_burst_counts_are_exact(key: str, value: int, metric: str) -> None:
    results = healthy()
    results["burst_loop"]["ours"][7][key] = value
    j = verdict_of(results)
    row = next(r for r in j.rows if r.scenario == "burst_loop" and r.metric.startswith(metric))
    assert row.verdict == judge.MISSED
    assert j.exit_code == 1


def test_one_rollover_call_that_waited_on_the_network_is_a_miss() -> None:
    """The 387 ms caller: judged on the max of every repetition, not on p99."""
    results = healthy()
    results["rollover"]["ours"][6].update(max_ms=387.0, waited=1)
    j = verdict_of(results)
    row = next(r for r in j.rows if r.scenario == "rollover" and r.metric.startswith("max call"))
    assert row.verdict == judge.MISSED
    assert "ours rep 7: 387" in row.reason


def test_a_rollover_refresh_storm_is_a_miss() -> None:
    results = healthy()
    results["rollover"]["ours"][0].update(token_requests=40, distinct_tokens=41)
    assert verdict_of(results).exit_code == 1


def _set_ratio(results: judge.Results, ratios: list[float]) -> None:
    for stock, ours, ratio in zip(
        results["warm"]["stock"], results["warm"]["ours"], ratios, strict=True
    ):
        stock["manager_cpu_us"] = 20.0
        ours["manager_cpu_us"] = 20.0 * ratio


def _warm_ratio_row(j: judge.Judgement) -> judge.Row:
    return next(r for r in j.rows if r.scenario == "warm" and "deep copy as ADK" in r.metric)


def test_a_ci_straddling_the_goal_is_within_noise_and_not_a_pass() -> None:
    results = healthy()
    _set_ratio(results, [0.99, 1.00, 1.01, 1.015, 1.02, 1.025, 1.03, 1.04, 1.00, 1.03])
    j = verdict_of(results)
    row = _warm_ratio_row(j)
    assert row.verdict == judge.NOISE
    assert "straddles" in row.reason
    assert j.exit_code == 3


def test_a_ci_wholly_above_the_goal_is_a_miss() -> None:
    results = healthy()
    _set_ratio(results, [1.05 + 0.001 * i for i in range(10)])
    j = verdict_of(results)
    assert _warm_ratio_row(j).verdict == judge.MISSED
    assert j.exit_code == 1


def test_a_good_median_from_too_few_repetitions_is_not_a_pass() -> None:
    plan = runner.plan_for(3, ["warm"], runner.IMPLS)
    results = {"warm": {i: [_run("warm", i, rep) for rep in range(3)] for i in plan["warm"]}}
    j = judge.judge(results, plan)
    assert _warm_ratio_row(j).verdict == judge.NOISE
    assert j.exit_code == 3


def test_a_smoke_run_reports_noise_but_still_fails_on_a_miss() -> None:
    plan = runner.plan_for(1, None, runner.IMPLS)
    results = {s: {i: [_run(s, i, 0)] for i in by} for s, by in plan.items()}
    for path in ("cold_key", "cold_metadata"):
        for runs in results[path].values():
            runs[0]["callers"] = 3  # a smoke run makes 3 cold exchanges, not 5
    for runs in results["coroutine"].values():
        runs[0]["calls"] = 5 * 2_000  # and 5 batches of 2 000 awaits
    assert judge.judge(results, plan, quick=True).exit_code == 0
    results["import"]["ours"][0]["exchangers"] = [judge.ADK_STOCK]
    assert judge.judge(results, plan, quick=True).exit_code == 1


def test_the_bootstrap_is_seeded_and_brackets_the_median() -> None:
    xs = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 0.8, 1.0, 1.02, 0.98]
    first, second = judge.bootstrap_median(xs), judge.bootstrap_median(xs)
    assert first == second
    est, lo, hi = first
    assert lo <= est <= hi and lo >= min(xs) and hi <= max(xs) and lo < hi


def test_unmeasured_cells_show_a_dash_not_zero() -> None:
    j = verdict_of(healthy())
    for row in j.rows:
        if row.scenario == "import":
            assert row.cells["stock"] == judge.NOT_MEASURED, row.metric
    text = runner.table(j.rows, runner._columns({}))
    assert "| 0 |" not in text.split("6 import")[1].split("\n")[0]


def test_bench_run_rejudge_exits_non_zero_and_names_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end through runner.main, as `bench/run --rejudge` is used."""
    results = healthy()
    for run in results["warm"]["ours"]:
        run.update(exchangers=[judge.ADK_STOCK], ours_loaded=False)
    saved = tmp_path / "latest.json"
    saved.write_text(
        json.dumps(
            {
                "machine": runner.machine(),
                "args": {"quick": False, "reps": REPS},
                "plan": PLAN,
                "took_s": 1.0,
                "results": copy.deepcopy(results),
            }
        )
    )
    assert runner.main(["--rejudge", str(saved)]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err
    assert "exchanger under test is not the one named" in err


# -- the rows added with the coroutine, httpx auth, MCP rotation and verify scenarios --

NEW = ("coroutine", "httpx_auth", "mcp_rotation", "verify")


def _row(j: judge.Judgement, scenario: str, metric: str) -> judge.Row:
    return next(r for r in j.rows if r.scenario == scenario and r.metric.startswith(metric))


def test_a_full_run_plans_the_new_scenarios_with_their_comparison() -> None:
    plan = runner.plan_for(REPS, None, runner.IMPLS)
    assert plan["coroutine"] == {"stock": REPS, "ours": REPS}
    assert plan["httpx_auth"] == {"gauth": REPS, "ours": REPS}
    assert plan["mcp_rotation"] == {"stock": 3, "ours": REPS}
    assert plan["verify"] == {"gauth": REPS, "ours": REPS}
    j = verdict_of(healthy())
    for scenario in NEW:
        assert rows(j, scenario), f"{scenario} has no judged row"
        assert {r.verdict for r in rows(j, scenario)} == {judge.MET}, scenario


def test_google_auth_alternates_with_ours_where_adk_has_no_such_thing() -> None:
    # Back to back, which first alternating: a paired ratio compares neighbours.
    assert runner.run_order({"gauth": REPS, "ours": REPS}, 0) == ["gauth", "ours"]
    assert runner.run_order({"gauth": REPS, "ours": REPS}, 1) == ["ours", "gauth"]
    assert runner.run_order({"stock": 3, "ours": REPS}, 3) == ["ours"]
    assert runner.run_order(PLAN["cold_key"], 1) == ["ours", "stock", "gauth", "adk1"]


@pytest.mark.parametrize(
    ("scenario", "impl", "key", "metric"),
    [
        ("coroutine", "ours", "exchange_cpu_us", "`await exchanger.exchange"),
        ("httpx_auth", "ours", "auth_over_floor_us", "per-request cost"),
        ("mcp_rotation", "ours", "sessions", "MCP sessions opened"),
        ("mcp_rotation", "ours", "rotations", "token rotations"),
        ("mcp_rotation", "stock", "refused", "MCP requests refused"),  # 3 repetitions
        ("verify", "ours", "warm_cpu_us", "warm (the caller's token again)"),
        ("verify", "ours", "warm_async_cpu_us", "warm, ours `await verify_async`"),
        ("verify", "gauth", "cached_cpu_us", "speed-up warm"),
        ("verify", "gauth", "certs_fetches", "key-set fetches"),
        ("verify", "gauth", "default_calls", "key-set fetches"),
    ],
)
def test_a_figure_missing_from_one_repetition_is_a_miss(
    scenario: str, impl: str, key: str, metric: str
) -> None:
    """Not a smaller sample: nine repetitions of ten are not "within noise"."""
    results = healthy()
    del results[scenario][impl][-1][key]
    j = verdict_of(results)
    assert _row(j, scenario, metric).verdict == judge.MISSED
    assert j.exit_code == 1


@pytest.mark.parametrize(
    ("scenario", "impl"),
    [
        ("coroutine", "ours"),
        ("coroutine", "stock"),
        ("httpx_auth", "ours"),
        ("httpx_auth", "gauth"),
        ("mcp_rotation", "ours"),
        ("mcp_rotation", "stock"),
        ("verify", "ours"),
        ("verify", "gauth"),
    ],
)
def test_an_errored_repetition_breaks_every_judged_row_of_a_new_scenario(
    scenario: str, impl: str
) -> None:
    results = healthy()
    results[scenario][impl][1] = {"error": "exit 1: Traceback ... RuntimeError"}
    j = verdict_of(results)
    assert {r.verdict for r in rows(j, scenario)} == {judge.MISSED}
    assert any(f"{impl} rep 2 failed" in reason for reason in j.reasons())


def test_a_hung_mcp_repetition_is_a_miss() -> None:
    results = healthy()
    results["mcp_rotation"]["ours"][9] = {"error": "hung: no result after 180 s", "hung": True}
    j = verdict_of(results)
    assert _row(j, "mcp_rotation", "MCP sessions opened").verdict == judge.MISSED
    assert any("ours rep 10 hung" in reason for reason in j.reasons())


@pytest.mark.parametrize("sessions", [0, 2, 6])
def test_ours_must_open_exactly_one_mcp_session(sessions: int) -> None:
    results = healthy()
    results["mcp_rotation"]["ours"][7]["sessions"] = sessions
    j = verdict_of(results)
    row = _row(j, "mcp_rotation", "MCP sessions opened")
    assert row.verdict == judge.MISSED
    assert f"ours rep 8: {sessions}" in row.reason
    assert j.exit_code == 1


def test_one_mcp_session_without_rotations_proves_nothing() -> None:
    results = healthy()
    results["mcp_rotation"]["ours"][0]["rotations"] = 4
    assert _row(verdict_of(results), "mcp_rotation", "token rotations").verdict == judge.MISSED


@pytest.mark.parametrize(
    ("impl", "change", "metric"),
    [
        ("ours", {"refused": 1}, "MCP requests refused"),
        ("stock", {"refused": 3}, "MCP requests refused"),
        ("ours", {"answered": 39}, "agent turns the tool answered"),
        ("ours", {"mcp_requests": 0}, "MCP requests refused"),
    ],
)
def test_every_mcp_call_must_get_200_and_answer(
    impl: str, change: dict[str, int], metric: str
) -> None:
    results = healthy()
    results["mcp_rotation"][impl][2].update(change)
    assert _row(verdict_of(results), "mcp_rotation", metric).verdict == judge.MISSED


@pytest.mark.parametrize(
    ("scenario", "impl", "held", "loaded"),
    [
        # The factory was not used: a tool held a credential manager (the header road).
        ("mcp_rotation", "ours", [judge.ID_TOKEN_AUTH, judge.OURS], True),
        ("mcp_rotation", "stock", [judge.ADK_STOCK], True),
        ("httpx_auth", "ours", ["httpx.Auth"], True),
        ("httpx_auth", "gauth", [judge.GOOGLE_AUTH[0]], True),
        ("verify", "gauth", [judge.OURS_VERIFIER], True),
        ("verify", "ours", [judge.GOOGLE_AUTH_VERIFY], True),
        ("coroutine", "ours", [judge.ADK_STOCK], True),
    ],
)
def test_what_actually_ran_is_checked_in_the_new_scenarios(
    scenario: str, impl: str, held: list[str], loaded: bool
) -> None:
    results = healthy()
    results[scenario][impl][-1].update(exchangers=held, ours_loaded=loaded)
    j = verdict_of(results)
    assert {r.verdict for r in rows(j, scenario)} == {judge.MISSED}
    assert any("exchanger under test is not the one named" in reason for reason in j.reasons())


def test_an_unrecorded_provenance_in_a_new_scenario_is_a_miss() -> None:
    results = healthy()
    del results["verify"]["gauth"][0]["exchangers"]
    assert {r.verdict for r in rows(verdict_of(results), "verify")} == {judge.MISSED}


def test_a_coroutine_over_one_microsecond_is_a_miss() -> None:
    results = healthy()
    for run in results["coroutine"]["ours"]:
        run["exchange_cpu_us"] = 1.2
    j = verdict_of(results)
    assert _row(j, "coroutine", "`await exchanger.exchange").verdict == judge.MISSED


def test_ours_exchange_must_be_a_coroutine_function() -> None:
    results = healthy()
    results["coroutine"]["ours"][5]["coroutine_function"] = 0
    assert _row(verdict_of(results), "coroutine", "ours' `exchange`").verdict == judge.MISSED


def test_a_stock_refetch_in_the_coroutine_scenario_is_a_miss() -> None:
    # A stock run that went upstream on every call measured something else.
    results = healthy()
    results["coroutine"]["stock"][0]["token_requests"] = 5
    assert _row(verdict_of(results), "coroutine", "upstream token").verdict == judge.MISSED


@pytest.mark.parametrize(
    ("impl", "change", "metric"),
    [
        ("ours", {"not_ok": 1}, "responses other than 200"),
        ("gauth", {"requests_served": 6900}, "requests the server answered"),
        ("ours", {"token_requests": 2}, "upstream token requests"),
    ],
)
def test_httpx_requests_are_all_answered_from_one_token(
    impl: str, change: dict[str, int], metric: str
) -> None:
    results = healthy()
    results["httpx_auth"][impl][6].update(change)
    assert _row(verdict_of(results), "httpx_auth", metric).verdict == judge.MISSED


def test_an_httpx_cost_above_ten_microseconds_over_the_floor_is_a_miss() -> None:
    results = healthy()
    for run in results["httpx_auth"]["ours"]:
        run["auth_over_floor_us"] = 15.0
    assert _row(verdict_of(results), "httpx_auth", "per-request cost").verdict == judge.MISSED


def test_ours_slower_than_google_auth_with_cached_certs_is_a_miss() -> None:
    results = healthy()
    for run in results["verify"]["ours"]:
        run["warm_cpu_us"] = 80.0
    j = verdict_of(results)
    assert _row(j, "verify", "speed-up warm").verdict == judge.MISSED
    assert _row(j, "verify", "warm (the caller's token again)").verdict == judge.MISSED


@pytest.mark.parametrize(("impl", "fetches"), [("ours", 0), ("ours", 2), ("gauth", 0)])
def test_the_keys_must_come_from_the_emulator(impl: str, fetches: int) -> None:
    # google-auth with no certs fetched from the emulator got them from elsewhere.
    results = healthy()
    results["verify"][impl][0]["certs_fetches"] = fetches
    assert verdict_of(results).exit_code == 1


def test_a_token_for_another_audience_in_a_new_scenario_is_a_miss() -> None:
    results = healthy()
    results["httpx_auth"]["ours"][2]["wrong_audience"] = 1
    assert {r.verdict for r in rows(verdict_of(results), "httpx_auth")} == {judge.MISSED}


def test_the_comparison_side_is_shown_beside_ours() -> None:
    j = verdict_of(healthy())
    assert _row(j, "verify", "warm (the caller's token again)").cells["gauth"].startswith("57")
    assert _row(j, "httpx_auth", "per-request cost").cells["gauth"].startswith("19")
    assert _row(j, "mcp_rotation", "MCP sessions opened").cells["stock"] == "21"
    assert _row(j, "coroutine", "`await exchanger.exchange").cells["stock"].startswith("0.7")
