"""What ``doctor`` says about a Workload Identity Federation credential: where the
subject token comes from, which pool and provider, how the exchange at STS and
the impersonation went, and the usual fixes."""

from __future__ import annotations

from typing import Any

from .._native import SourceInfo

__all__ = ["federation_report", "federation_steps", "render_federation"]


def federation_report(info: SourceInfo) -> dict[str, Any] | None:
    """The federated parts of a resolved credential (``None`` for other kinds)."""
    f = info.federation
    if f is None:
        return None
    return {
        "credential_source": f.credential_source,
        "subject_from": f.subject_from,
        "audience": f.audience,
        "pool_kind": f.pool_kind,
        "project_number": f.project_number,
        "pool_id": f.pool_id,
        "provider_id": f.provider_id,
        "subject_token_type": f.subject_token_type,
        "token_url": f.token_url,
        "impersonating": info.impersonating,
        "token_lifetime_seconds": f.token_lifetime_seconds,
        "workforce_pool_user_project": f.workforce_pool_user_project,
        "steps": [],
    }


def _principal_set(fed: dict[str, Any]) -> str:
    if fed["pool_kind"] == "workforce":
        return (
            f"principalSet://iam.googleapis.com/locations/global/workforcePools/{fed['pool_id']}/*"
        )
    return (
        "principalSet://iam.googleapis.com/projects/"
        f"{fed['project_number'] or 'PROJECT_NUMBER'}/locations/global/"
        f"workloadIdentityPools/{fed['pool_id'] or 'POOL_ID'}/*"
    )


def federation_steps(
    fed: dict[str, Any], error: BaseException | None, *, wanted_id_token: bool
) -> list[str]:
    """One line per step of the federated flow, up to the one that failed.

    Which step failed is read from the error: it names the endpoint (STS's
    ``token_url`` or IAM's ``:generate…`` method) or the source's field, in
    that order (STS's advice names the source too).
    """
    source = f"subject token ({fed['credential_source']}: {fed['subject_from']})"
    sts = f"STS exchange at {fed['token_url']}"
    imp = fed["impersonating"]
    if error is None:
        steps = [f"{source}: read", f"{sts}: ok (federated access token)"]
        if imp:
            steps.append(f"impersonation of {imp}: ok")
        return steps
    text = str(error)
    if fed["token_url"] in text:
        return [
            f"{source}: read",
            f"{sts}: refused (see the error below). Usual causes: the provider's issuer,"
            " allowed audiences or attribute condition refuse the token (invalid_grant), or"
            " the pool or provider is missing or disabled (invalid_target)",
        ]
    if imp and (":generate" in text or "iamcredentials" in text):
        return [
            f"{source}: read",
            f"{sts}: ok",
            f"impersonation of {imp}: refused (see the error below). The pool's identities"
            f" need roles/iam.workloadIdentityUser on it: gcloud iam service-accounts"
            f" add-iam-policy-binding {imp} --role=roles/iam.workloadIdentityUser"
            f' --member="{_principal_set(fed)}"',
        ]
    if "credential_source" in text or "executable " in text:
        return [f"{source}: failed (see the error below)"]
    if wanted_id_token and not imp and "service_account_impersonation_url" in text:
        return [
            f"{source}: not read",
            "no service account to impersonate: STS issues access tokens only, so an ID token"
            " needs `create-cred-config --service-account=SA_EMAIL` (or --impersonate SA_EMAIL)",
        ]
    return [f"{source}: ?", f"{sts}: ? (see the error below)"]


def render_federation(fed: dict[str, Any], line: Any) -> None:
    """The federation section of doctor's text output."""
    line()
    kind = "Workforce" if fed["pool_kind"] == "workforce" else "Workload"
    line(f"{kind} Identity Federation")
    pool = fed["pool_id"] or "?"
    if fed["project_number"]:
        pool += f" (project {fed['project_number']})"
    rows = [
        ("subject token", f"{fed['credential_source']}: {fed['subject_from']}"),
        ("pool", pool),
        ("provider", fed["provider_id"] or f"? (audience {fed['audience']})"),
        ("token type", fed["subject_token_type"]),
        ("STS", fed["token_url"]),
        ("user project", fed["workforce_pool_user_project"]),
    ]
    if fed["impersonating"]:
        lifetime = fed["token_lifetime_seconds"]
        target = fed["impersonating"] + (f" (access tokens live {lifetime} s)" if lifetime else "")
        rows.append(("impersonating", target))
    elif fed["credential_source"] != "refresh_token":
        rows.append(("impersonating", "none: access tokens only (no ID tokens)"))
    for label, value in rows:
        if value:
            line(f"    {label + ':':<16}{value}")
    for number, step in enumerate(fed["steps"], 1):
        line(f"  {number}. {step}")
