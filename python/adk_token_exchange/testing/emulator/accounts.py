"""Who exists at the emulated Google: service accounts, gcloud logins, impersonation grants."""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from . import keys
from .wire import numeric_id

__all__ = ["Accounts", "AuthorizedUser", "ServiceAccount"]


@dataclass
class ServiceAccount:
    """A service account; ``key`` is set once a key file was handed out for it."""

    email: str
    project_id: str
    unique_id: str
    key: rsa.RSAPrivateKey | None
    key_id: str | None
    client_id: str
    older_keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    """Keys replaced by :meth:`Accounts.rotate_key`, by key id: still valid, as on
    Google until a key is deleted."""

    def key_for(self, key_id: str | None) -> rsa.RSAPrivateKey | None:
        """The key an assertion with ``kid`` = ``key_id`` must be signed with."""
        if key_id is None or key_id == self.key_id:
            return self.key
        return self.older_keys.get(key_id)


@dataclass
class AuthorizedUser:
    """A gcloud login: the OAuth client it used and the scopes it granted."""

    email: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]


class Accounts:
    """The identities Google knows and who may impersonate whom; thread-safe.

    Until :meth:`restrict_impersonation`, anyone may impersonate anyone (the
    Service Account Token Creator role granted everywhere).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._service_accounts: dict[str, ServiceAccount] = {}
        self._users: dict[str, AuthorizedUser] = {}
        self._counter = itertools.count(1)
        self._impersonation_restricted = False
        self._impersonation_grants: set[tuple[str, str]] = set()

    # -- service accounts ------------------------------------------------------------

    def register(self, email: str, project_id: str) -> ServiceAccount:
        """The service account ``email``, created keyless if it does not exist."""
        with self._lock:
            account = self._service_accounts.get(email)
            if account is None:
                unique_id = numeric_id(email)
                account = ServiceAccount(email, project_id, unique_id, None, None, unique_id)
                self._service_accounts[email] = account
            return account

    def with_key(self, email: str | None, project_id: str) -> ServiceAccount:
        """A service account that has a key: ``email``, or a fresh ``agent-N@PROJECT``.

        The same email always keeps the same key.
        """
        with self._lock:
            if email is None:
                email = f"agent-{next(self._counter)}@{project_id}.iam.gserviceaccount.com"
            account = self.register(email, project_id)
            if account.key is None:
                account.key = keys.pooled_key(1 + len(self._service_accounts) % 3)
                account.key_id = secrets.token_hex(20)
            return account

    def rotate_key(self, email: str, project_id: str) -> ServiceAccount:
        """Give ``email`` a new key (a new key id); the previous one keeps working."""
        with self._lock:
            account = self.with_key(email, project_id)
            assert account.key is not None and account.key_id is not None
            account.older_keys[account.key_id] = account.key
            account.key = keys.fresh_key()
            account.key_id = secrets.token_hex(20)
            return account

    def service_account(self, email: str) -> ServiceAccount | None:
        """The service account ``email``, if it exists."""
        with self._lock:
            return self._service_accounts.get(email)

    def exists(self, email: str) -> bool:
        """Whether the service account ``email`` exists."""
        with self._lock:
            return email in self._service_accounts

    def delete(self, email: str) -> None:
        """Delete a service account: its key stops working and IAM answers 404 for it."""
        with self._lock:
            self._service_accounts.pop(email, None)

    # -- gcloud logins ---------------------------------------------------------------

    def add_user(self, refresh_token: str, user: AuthorizedUser) -> None:
        """Remember a login under its refresh token."""
        with self._lock:
            self._users[refresh_token] = user

    def user(self, refresh_token: str) -> AuthorizedUser | None:
        """The login a refresh token belongs to, unless revoked."""
        with self._lock:
            return self._users.get(refresh_token)

    def revoke(self, refresh_token: str) -> None:
        """Forget a refresh token (``gcloud auth revoke``)."""
        with self._lock:
            self._users.pop(refresh_token, None)

    # -- impersonation policy --------------------------------------------------------

    def restrict_impersonation(self) -> None:
        """From now on only granted pairs may impersonate."""
        with self._lock:
            self._impersonation_restricted = True

    def allow_impersonation(self, principal: str, target: str) -> None:
        """Grant ``principal`` Service Account Token Creator on ``target``."""
        with self._lock:
            self._impersonation_grants.add((principal, target))

    def may_impersonate(self, chain: Sequence[str]) -> bool:
        """Whether each principal of ``chain`` may impersonate the next one.

        A grant to ``principalSet://…/POOL/*`` covers every federated
        ``principal://…/POOL/subject/…`` of that pool, as in IAM.
        """
        with self._lock:
            if not self._impersonation_restricted:
                return True
            return all(
                any(
                    target == granted_target and _member_covers(member, caller)
                    for member, granted_target in self._impersonation_grants
                )
                for caller, target in itertools.pairwise(chain)
            )


def _member_covers(member: str, principal: str) -> bool:
    if member == principal:
        return True
    if member.startswith("principalSet://") and member.endswith("/*"):
        pool = member.removeprefix("principalSet://").removesuffix("*")
        return principal.startswith("principal://" + pool)
    return False
