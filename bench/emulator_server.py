"""The local Google emulator in a process of its own, driven over stdin/stdout.

A benchmark worker starts this, so that the emulator's handler threads (RSA
signing, JSON) never compete for the worker's GIL: loop lag and latency
measured in the worker are the exchanger's, not the emulator's. One JSON object
per line each way; see ``_handle`` for the operations.

The emulator module is loaded without executing ``adk_token_exchange``'s
``__init__`` (which loads the native core): the emulator is the same whatever
state the core is in, and the stock-ADK runs never load our code at all.
"""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent.parent / "python" / "adk_token_exchange"


def _emulator_class() -> Any:
    package = types.ModuleType("adk_token_exchange")
    package.__path__ = [str(_PACKAGE)]
    sys.modules["adk_token_exchange"] = package
    from adk_token_exchange.testing.emulator import GoogleEmulator

    return GoogleEmulator


def _issues_token(record: Any) -> bool:
    if record.kind in ("token", "iam"):
        return True
    return record.kind == "metadata" and record.path.endswith(("/identity", "/token"))


def _counts(emulator: Any) -> dict[str, Any]:
    records = emulator.requests
    by_kind: dict[str, int] = {}
    for record in records:
        by_kind[record.kind] = by_kind.get(record.kind, 0) + 1
    issuing = [r for r in records if _issues_token(r)]
    by_audience: dict[str, int] = {}
    for record in issuing:
        if record.audience:
            by_audience[record.audience] = by_audience.get(record.audience, 0) + 1
    return {
        "token_requests_by_audience": by_audience,
        "requests": len(records),
        "token_requests": len(issuing),
        "connections": emulator.connections,
        "by_kind": by_kind,
        "errors": sum(1 for r in records if r.status is not None and r.status >= 400),
        "internal_errors": len(emulator.internal_errors),
    }


def _handle(emulator: Any, message: dict[str, Any]) -> dict[str, Any]:
    op = message["op"]
    if op == "info":
        return {
            "url": emulator.url,
            "metadata_host": emulator.metadata_host,
            "token_uri": emulator.token_uri,
        }
    if op == "service_account_info":
        return {"info": emulator.service_account_info(message.get("email"))}
    if op == "set":
        if "latency" in message:
            emulator.set_latency(float(message["latency"]))
        if "token_lifetime" in message:
            emulator.token_lifetime = int(message["token_lifetime"])
        return {}
    if op == "counts":
        return _counts(emulator)
    if op == "reset":
        emulator.reset_counts()
        return {}
    if op == "fault":  # for diagnosis: fail or hang the next n requests of an endpoint
        if message["kind"] == "fail":
            emulator.fail_next(int(message["n"]), 503, message.get("endpoint"))
        else:
            emulator.hang_next(int(message["n"]), message.get("endpoint"))
        return {}
    if op == "records":
        # For tracing: when each token-issuing request arrived and was answered,
        # on this machine's CLOCK_MONOTONIC (the worker's time.monotonic()).
        return {
            "records": [
                {
                    "kind": r.kind,
                    "path": r.path,
                    "audience": r.audience,
                    "connection": r.connection,
                    "started": r.started,
                    "finished": r.finished,
                    "status": r.status,
                }
                for r in emulator.requests
                if _issues_token(r)
            ],
            "now": time.monotonic(),
        }
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    emulator = _emulator_class()().start()
    out = sys.stdout
    try:
        for line in sys.stdin:
            message = json.loads(line)
            if message.get("op") == "stop":
                break
            try:
                reply = {"ok": True, **_handle(emulator, message)}
            except Exception as exc:  # report to the worker, keep serving
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(reply) + "\n")
            out.flush()
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
