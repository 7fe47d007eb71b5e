"""Workload files the roads' tests make: a client certificate google-auth finds."""

from __future__ import annotations

from pathlib import Path

from adk_token_exchange.testing import GoogleEmulator

__all__ = ["client_certificate_config"]


def client_certificate_config(tmp_path: Path) -> Path:
    """A ``certificate_config.json`` with a workload certificate, as Agent Identity has:
    what makes ADK 2.x swap an ``httpx_client_factory`` for its mTLS transport."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
    workload = {"cert_path": str(cert), "key_path": str(key)}
    return GoogleEmulator.write_json(
        tmp_path, "certificate_config.json", {"cert_configs": {"workload": workload}}
    )
