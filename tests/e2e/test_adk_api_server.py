"""``adk api_server`` (the server behind ``adk web``) serving the #4458 agent.

The agent in ``tests/e2e/agents/cloud_run_mcp`` is loaded by ADK's own CLI in a
subprocess with the test's isolated environment, the metadata server pointed
at the emulator (the Cloud Run case), and asked over HTTP.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adk_token_exchange.testing import GoogleEmulator, ProtectedMcpServer
from adk_token_exchange.testing.scripted_llm import ANSWER_PREFIX

AGENTS_DIR = Path(__file__).parent / "agents"
APP = "cloud_run_mcp"
STARTUP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(method: str, url: str, body: Any = None, timeout: float = REQUEST_TIMEOUT) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture
def api_server(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, tmp_path: Path
) -> Iterator[str]:
    """``adk api_server tests/e2e/agents`` on 127.0.0.1; yields its base URL."""
    port = _free_port()
    env = dict(os.environ)  # already isolated from real Google by conftest
    env.update(
        GCE_METADATA_HOST=emulator.metadata_host,
        GCE_METADATA_IP=emulator.metadata_host,
        PROTECTED_MCP_URL=protected_mcp.url,
        PYTHONUNBUFFERED="1",
    )
    log = (tmp_path / "api_server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "google.adk.cli",
            "api_server",
            "--host=127.0.0.1",
            f"--port={port}",
            "--session_service_uri=memory://",
            "--artifact_service_uri=memory://",
            str(AGENTS_DIR),
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"api_server exited ({process.returncode}):\n{_tail(tmp_path)}")
            try:
                _http("GET", f"{base}/list-apps", timeout=2)
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    pytest.fail(f"api_server did not start:\n{_tail(tmp_path)}")
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "api_server.log").read_text(errors="replace")[-4000:]


def _texts(events: list[dict[str, Any]]) -> list[str]:
    return [
        part["text"]
        for event in events
        for part in (event.get("content") or {}).get("parts") or []
        if isinstance(part.get("text"), str)
    ]


def test_adk_api_server_agent_calls_cloud_run_mcp_tool_with_id_token(
    api_server: str,
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    tmp_path: Path,
) -> None:
    assert APP in _http("GET", f"{api_server}/list-apps")
    session = _http("POST", f"{api_server}/apps/{APP}/users/dev/sessions", {})
    answers: list[str] = []
    for _ in range(2):  # the second turn is served from the token cache
        try:
            events = _http(
                "POST",
                f"{api_server}/run",
                {
                    "app_name": APP,
                    "user_id": "dev",
                    "session_id": session["id"],
                    "new_message": {"role": "user", "parts": [{"text": "Say hello"}]},
                },
            )
        except urllib.error.HTTPError as exc:
            pytest.fail(f"/run failed: {exc}\n{_tail(tmp_path)}")
        answers += [t for t in _texts(events) if t.startswith(ANSWER_PREFIX)]

    caller = emulator.metadata_service_account
    assert answers == [f"{ANSWER_PREFIX}Hello, adk web! (called by {caller})"] * 2, _tail(tmp_path)
    assert protected_mcp.count(accepted=False) == 0
    assert {d.audience for d in protected_mcp.decisions} == {protected_mcp.audience}
    identity = [r for r in emulator.requests if r.path.endswith("/identity")]
    assert len(identity) == 1
