"""The local Google emulator in a process of its own, driven over stdin/stdout.

A benchmark worker starts this, so that the emulator's handler threads (RSA
signing, JSON) never compete for the worker's GIL: loop lag and latency
measured in the worker are the exchanger's, not the emulator's. One JSON object
per line each way; see ``_handle`` for the operations.

The emulator module is loaded without executing ``adk_token_exchange``'s
``__init__`` (which loads the native core): the emulator is the same whatever
state the core is in, and the stock-ADK runs never load our code at all.

The servers a scenario's client calls live here too, for the same reason:
a loopback HTTP server that answers every request 200 (``ok_server``: the
``httpx_auth`` scenario times the client, not a server) and the testing
package's ``ProtectedMcpServer`` (``mcp_start``: Cloud Run's ID-token check in
front of an MCP app that counts the sessions clients open).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sys
import threading
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


class OkServer:
    """HTTP/1.1 on loopback that answers every request ``200 ok``, keeping the connection.

    asyncio on a thread of its own; no parsing beyond the end of the headers
    (the scenario sends GETs without a body), so what a request costs here is
    small and the same whatever auth the client put on it.
    """

    RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"

    def __init__(self) -> None:
        self.requests = 0
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), name="ok-server", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the 200 server did not start")

    def _serve(self, ready: threading.Event) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    self.requests += 1
                    writer.write(self.RESPONSE)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await server.serve_forever()

        asyncio.run(main())


def _mcp_server(emulator: Any) -> Any:
    """A ``ProtectedMcpServer`` that also remembers which tokens passed its gate."""
    from adk_token_exchange.testing.protected import ProtectedMcpServer

    class TokenCountingMcpServer(ProtectedMcpServer):
        def __init__(self) -> None:
            super().__init__(emulator)
            self.tokens: set[str] = set()

        def _verify(self, token: str | None) -> Any:
            verdict = super()._verify(token)
            if verdict.accepted and token is not None:
                self.tokens.add(hashlib.sha256(token.encode()).hexdigest())
            return verdict

    return TokenCountingMcpServer().start()


def _mcp_counts(server: Any) -> dict[str, Any]:
    decisions = server.decisions
    return {
        "initializations": server.sessions.initializations,
        "accepted": sum(1 for d in decisions if d.accepted),
        "refused": sum(1 for d in decisions if not d.accepted),
        "refusals": sorted({f"{d.status} {d.reason}" for d in decisions if not d.accepted}),
        "wrong_audience": sum(1 for d in decisions if d.accepted and d.audience != server.audience),
        "distinct_tokens": len(server.tokens),
    }


SERVERS: dict[str, Any] = {}  # the servers a scenario started, by name


def _handle(emulator: Any, message: dict[str, Any]) -> dict[str, Any]:
    op = message["op"]
    if op == "info":
        return {
            "url": emulator.url,
            "metadata_host": emulator.metadata_host,
            "token_uri": emulator.token_uri,
            "jwks_url": emulator.jwks_url,
            "certs_url": emulator.certs_url,
        }
    if op == "issue_id_tokens":  # signed here, before the scenario times anything
        return {
            "tokens": [
                emulator.issue_id_token(
                    message["audience"], email=message.get("email"), claims={"n": i}
                )
                for i in range(int(message["n"]))
            ]
        }
    if op == "ok_server":
        server = SERVERS.setdefault("ok", OkServer())
        return {"url": f"http://127.0.0.1:{server.port}/", "requests": server.requests}
    if op == "mcp_start":
        server = SERVERS.setdefault("mcp", _mcp_server(emulator))
        return {"url": server.url, "audience": server.audience}
    if op == "mcp_counts":
        return _mcp_counts(SERVERS["mcp"])
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
        if "mcp" in SERVERS:
            SERVERS["mcp"].stop()
        emulator.stop()


if __name__ == "__main__":
    main()
