"""Everything that depends on ADK's version, in one place.

Reading ADK's ``ServiceAccount`` model, building ADK's result classes, mapping
our errors into ADK's exception family, and installing the exchanger into ADK.
The Rust core calls :func:`read_request`, :func:`build_result` and
:func:`wrap_error` (see ``_native.pyi``); nothing else here is called per
exchange.

Per ADK version:

* ``ServiceAccount.use_id_token`` / ``audience`` are model fields from ADK 1.26;
  on 1.24.1 they arrive as pydantic extras (``model_extra``), as do our own
  extras ``impersonate``, ``delegates`` and ``credentials_file`` on every
  version. Fields are read by attribute, never through
  ``model_dump(by_alias=True)`` (camelCase keys).
* ADK 1.24.1's ``ServiceAccount`` requires ``scopes``; the helpers pass
  ``scopes=[]`` for ID tokens.
* ADK 1.24.1's ``CredentialManager`` reloads an exchanged service-account
  credential from the credential service (``adk web`` has one) instead of
  exchanging again, so a token would be served past its expiry; 2.x skips that
  step for service accounts. :func:`install` makes 1.24.1 skip it too.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn

from google.adk.auth.auth_credential import (
    AuthCredential,
    AuthCredentialTypes,
    HttpAuth,
    HttpCredentials,
    ServiceAccount,
    ServiceAccountCredential,
)
from google.adk.auth.exchanger.base_credential_exchanger import (
    CredentialExchangeError,
    ExchangeResult,
)
from google.adk.tools.openapi_tool.auth.credential_exchangers.base_credential_exchanger import (
    AuthCredentialMissingError,
)

from . import errors
from ._audience import origin_of
from ._native import Credentials, Token

if TYPE_CHECKING:
    from .exchanger import ServiceAccountExchanger

__all__ = [
    "access_token_credential",
    "build_result",
    "id_token_credential",
    "install",
    "is_installed",
    "read_request",
    "shared_exchanger",
    "uninstall",
    "wrap_error",
]

logger = logging.getLogger("adk_token_exchange")

CLOUD_PLATFORM_SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
_SA: Final = AuthCredentialTypes.SERVICE_ACCOUNT
# ADK >= 1.26 models these; 1.24.1 keeps them in model_extra.
_ID_TOKEN_FIELDS: Final = "use_id_token" in ServiceAccount.model_fields
_SCOPES_REQUIRED: Final = ServiceAccount.model_fields["scopes"].is_required()


# --------------------------------------------------------------------------
# Errors: ours, and at the same time ADK's.


def _adk_error_class(base: type[errors.TokenExchangeError]) -> type[errors.TokenExchangeError]:
    # Both ADK bases, so neither calling path sees a ValueError (which ADK's
    # toolset auth swallows into a credential request) and `except` works for
    # ADK's own types as well as ours.
    cls = type(
        base.__name__,
        (base, CredentialExchangeError, AuthCredentialMissingError),
        {
            "__module__": __name__,
            "__doc__": f"{base.__doc__}\n\nAlso ADK's CredentialExchangeError and"
            " AuthCredentialMissingError.",
        },
    )
    return cls


# Module-level names so that the classes pickle (multiprocessing, ADK's
# session services) as `adk_token_exchange._adk.<Name>`.
ConfigurationError = _adk_error_class(errors.ConfigurationError)
CredentialsNotFoundError = _adk_error_class(errors.CredentialsNotFoundError)
PermanentError = _adk_error_class(errors.PermanentError)
TokenExchangeError = _adk_error_class(errors.TokenExchangeError)
TransientError = _adk_error_class(errors.TransientError)
UpstreamTimeoutError = _adk_error_class(errors.UpstreamTimeoutError)

_ADK_ERRORS: Final[dict[type[BaseException], type[errors.TokenExchangeError]]] = {
    errors.ConfigurationError: ConfigurationError,
    errors.CredentialsNotFoundError: CredentialsNotFoundError,
    errors.PermanentError: PermanentError,
    errors.TokenExchangeError: TokenExchangeError,
    errors.TransientError: TransientError,
    errors.UpstreamTimeoutError: UpstreamTimeoutError,
}


def _adk_class_for(exc: BaseException) -> type[errors.TokenExchangeError]:
    for cls in type(exc).__mro__:
        adk_cls = _ADK_ERRORS.get(cls)
        if adk_cls is not None:
            return adk_cls
    return TokenExchangeError


def wrap_error(exc: BaseException) -> BaseException:
    """Our fetch error as an exception that is also ADK's (called by the core).

    The message and any attributes are kept; the core sets ``__cause__`` to
    ``exc``.
    """
    if isinstance(exc, CredentialExchangeError) and isinstance(exc, errors.TokenExchangeError):
        return exc
    wrapped = _adk_class_for(exc)(str(exc))
    wrapped.__dict__.update(getattr(exc, "__dict__", {}))
    return wrapped


def _config_error(message: str) -> NoReturn:
    raise ConfigurationError(message)


# --------------------------------------------------------------------------
# Reading ADK's ServiceAccount model (called by the core on every exchange).

# One exchange request, as the core wants it.
Request = tuple[Credentials, bool, "str | tuple[str, ...]"]

_MAX_MEMO: Final = 1024
# cheap key of a ServiceAccount's content -> request. The CredentialManager
# hands us a deep copy per call, so identity never repeats; content does, and
# deep copies share the (immutable) strings, whose hashes are cached.
_requests: dict[Any, Request] = {}
# cheap key of a credential source -> Credentials, so a key's JSON is built
# once, not per request.
_credentials: dict[Any, Credentials] = {}


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple((k, _hashable(v)) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(_hashable(v) for v in value)
    if hasattr(value, "__pydantic_extra__"):
        return (_hashable(value.__dict__), _hashable(value.__pydantic_extra__ or {}))
    return value


def _content_key(sa: ServiceAccount) -> Any:
    """What decides the request; the key by id, email, token_uri and PEM, not all its fields."""
    fields = sa.__dict__
    key = fields.get("service_account_credential")
    scopes = fields.get("scopes")
    extra = sa.__pydantic_extra__
    extra_key = None
    if extra:
        extra_key = tuple(extra.items())
        if list in map(type, extra.values()):  # e.g. delegates
            extra_key = tuple((k, tuple(v) if type(v) is list else v) for k, v in extra_key)
    if key is None:
        key_id = None
    else:
        kd = key.__dict__
        get = kd.get
        key_id = (get("private_key_id"), get("client_email"), get("token_uri"), get("private_key"))
    return (
        fields.get("use_default_credential"),
        key_id,
        None if key is None else key.__pydantic_extra__ or None,
        tuple(scopes) if scopes else None,
        fields.get("use_id_token"),
        fields.get("audience"),
        extra_key,
    )


def read_request(auth_credential: Any) -> Request:
    """What to fetch for an ADK service-account credential (called by the core).

    Returns ``(credentials, is_id_token, audience or scopes)``. Missing or
    contradictory configuration raises an error that is both our
    :class:`~adk_token_exchange.errors.ConfigurationError` and ADK's
    ``CredentialExchangeError`` / ``AuthCredentialMissingError``.
    """
    sa = getattr(auth_credential, "service_account", None)
    if sa is None:
        _missing_service_account(auth_credential)
    key = _content_key(sa)
    try:
        request = _requests.get(key)
    except TypeError:  # something unhashable (e.g. the key model's extras)
        key = _hashable(key)
        request = _requests.get(key)
    if request is None:
        request = _new_request(sa)
        if len(_requests) >= _MAX_MEMO:
            _requests.clear()
        _requests[key] = request
    return request


def _missing_service_account(auth_credential: Any) -> NoReturn:
    if auth_credential is None:
        _config_error(
            "No auth_credential: pass auth_credential=AuthCredential(auth_type="
            "AuthCredentialTypes.SERVICE_ACCOUNT, service_account=ServiceAccount(...)),"
            " e.g. adk_token_exchange.id_token_credential(<service URL>)."
        )
    _config_error(
        "AuthCredential.service_account is not set: set service_account="
        "ServiceAccount(use_default_credential=True, ...) or"
        " ServiceAccount(service_account_credential=<key>, ...),"
        " e.g. adk_token_exchange.id_token_credential(<service URL>)."
    )


def _extra(sa: ServiceAccount, name: str, camel: str | None = None) -> Any:
    extra = sa.__pydantic_extra__ or {}
    if name in extra:
        return extra[name]
    return extra.get(camel) if camel else None


def _new_request(sa: ServiceAccount) -> Request:
    if _ID_TOKEN_FIELDS:
        use_id_token = bool(sa.use_id_token)
        audience = sa.audience
    else:
        use_id_token = bool(_extra(sa, "use_id_token", "useIdToken"))
        audience = _extra(sa, "audience")
    credentials = _credentials_for(sa)
    if use_id_token:
        if not audience or not isinstance(audience, str):
            _config_error(
                "ServiceAccount.audience is required when use_id_token=True: set it to the"
                " URL of the receiving service (e.g. 'https://my-service-xyz.a.run.app'),"
                " or use adk_token_exchange.id_token_credential(<service URL>)."
            )
        return credentials, True, audience
    scopes = tuple(sa.scopes or ()) or (CLOUD_PLATFORM_SCOPE,)
    return credentials, False, scopes


def _impersonation(sa: ServiceAccount) -> tuple[str | None, tuple[str, ...]]:
    impersonate = _extra(sa, "impersonate")
    delegates = _extra(sa, "delegates") or ()
    if isinstance(delegates, str):
        delegates = (delegates,)
    if impersonate is None or isinstance(impersonate, str):
        if delegates and not impersonate:
            _config_error(
                "ServiceAccount 'delegates' is set without 'impersonate': set impersonate"
                " to the target service account email."
            )
        return impersonate or None, tuple(delegates)
    chain = tuple(impersonate)
    if not chain or not all(isinstance(e, str) and e for e in chain):
        _config_error(
            "ServiceAccount 'impersonate' must be a service account email or a list"
            " [delegate..., target] of emails."
        )
    if delegates:
        _config_error(
            "ServiceAccount: give delegates either as 'delegates' or as the leading"
            " entries of an 'impersonate' list, not both."
        )
    return chain[-1], chain[:-1]


def _credentials_for(sa: ServiceAccount) -> Credentials:
    impersonate, delegates = _impersonation(sa)
    key_model = sa.service_account_credential
    path = _extra(sa, "credentials_file", "credentialsFile")
    if path:
        memo_key: Any = ("file", str(path), impersonate, delegates)
    elif sa.use_default_credential:
        if key_model is not None:
            # ADK's own exchanger lets ADC win too; say so once.
            _warn_once(
                "ServiceAccount sets both use_default_credential=True and"
                " service_account_credential; using Application Default Credentials"
                " as ADK does. Drop one of them.",
            )
        memo_key = ("adc", impersonate, delegates)
    elif key_model is not None:
        memo_key = ("key", _hashable(key_model), impersonate, delegates)
    else:
        _config_error(
            "ServiceAccount has neither service_account_credential nor"
            " use_default_credential=True: set service_account_credential to the"
            " service account key, or use_default_credential=True for Application"
            " Default Credentials (Cloud Run, GKE, gcloud auth application-default login)."
        )
    credentials = _credentials.get(memo_key)
    if credentials is None:
        try:
            credentials = _new_credentials(sa, path, key_model, impersonate, delegates)
        except errors.TokenExchangeError as exc:
            # A key or file the core refuses up front (bad PEM, http token_uri):
            # ADK's error family too, like every fetch error.
            raise wrap_error(exc) from exc
        if len(_credentials) >= _MAX_MEMO:
            _credentials.clear()
        _credentials[memo_key] = credentials
    return credentials


def _new_credentials(
    sa: ServiceAccount,
    path: Any,
    key_model: ServiceAccountCredential | None,
    impersonate: str | None,
    delegates: tuple[str, ...],
) -> Credentials:
    if path:
        return Credentials.from_file(os.fspath(path), impersonate=impersonate, delegates=delegates)
    if sa.use_default_credential:
        return Credentials.application_default(impersonate=impersonate, delegates=delegates)
    assert key_model is not None
    return Credentials.from_service_account_info(
        _key_json(key_model),
        origin="ServiceAccount.service_account_credential",
        impersonate=impersonate,
        delegates=delegates,
    )


def _key_json(key_model: ServiceAccountCredential) -> str:
    info = key_model.model_dump()  # field names, not camelCase aliases
    info["type"] = info.pop("type_", None) or "service_account"
    return json.dumps(info)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning("%s", message)


# --------------------------------------------------------------------------
# Building ADK's result (called by the core once per token: the core keeps
# the result it built for a cached token and hands out the same objects, as
# ADK's own exchanger returns its cached credential).


def build_result(token: Token, auth_credential: Any) -> tuple[AuthCredential, ExchangeResult]:
    """ADK's bearer credential for ``token`` and the ``ExchangeResult`` around it.

    Called by the core once per token: ``exchange_credential`` returns the
    credential, ``exchange`` the ``ExchangeResult(credential, True)``.
    """
    quota_project = token.quota_project_id if token.kind == "access" else None
    credential = AuthCredential(
        auth_type=AuthCredentialTypes.HTTP,
        http=HttpAuth(
            scheme="bearer",
            credentials=HttpCredentials(token=token.value),
            additional_headers={"x-goog-user-project": quota_project} if quota_project else None,
        ),
    )
    return credential, ExchangeResult(credential, True)


def forget() -> None:
    """Drop the memos (with the core's ``clear_cache``, which drops tokens)."""
    _requests.clear()
    _credentials.clear()
    if _exchanger is not None:
        _exchanger.clear_results()


# --------------------------------------------------------------------------
# Building ADK's ServiceAccount model for the public helpers.


def _service_account(
    *,
    service_account_key: Any,
    impersonate: str | Sequence[str] | None,
    delegates: Sequence[str],
    fields: dict[str, Any],
) -> ServiceAccount:
    values: dict[str, Any] = {}
    if impersonate is not None:
        if isinstance(impersonate, str):
            chain: tuple[str, ...] = (impersonate,)
        else:
            chain = tuple(impersonate)
        if not chain or not all(isinstance(e, str) and e for e in chain):
            raise errors.ConfigurationError(
                "impersonate must be a service account email or a sequence"
                " [delegate..., target] of emails"
            )
        if len(chain) > 1 and delegates:
            raise errors.ConfigurationError(
                "give delegates either as delegates= or as the leading entries of"
                " impersonate=[delegate..., target], not both"
            )
        values["impersonate"] = chain[-1]
        all_delegates = tuple(delegates) or chain[:-1]
        if all_delegates:
            values["delegates"] = list(all_delegates)
    elif delegates:
        raise errors.ConfigurationError("delegates= needs impersonate=<target service account>")

    if service_account_key is None:
        values["use_default_credential"] = True
    elif isinstance(service_account_key, Mapping):
        values["service_account_credential"] = _key_model(dict(service_account_key), "the dict")
    elif isinstance(service_account_key, str) and service_account_key.lstrip().startswith("{"):
        try:
            info = json.loads(service_account_key)
        except json.JSONDecodeError as exc:
            raise errors.ConfigurationError(
                f"service_account_key is not valid JSON ({exc.msg} at line {exc.lineno}):"
                " pass the key's JSON text, a dict, or the path of the key file"
            ) from None
        if not isinstance(info, dict):
            raise errors.ConfigurationError("service_account_key JSON must be an object")
        values["service_account_credential"] = _key_model(info, "the JSON text")
    elif isinstance(service_account_key, (str, os.PathLike)):
        # Any ADC file (service_account, authorized_user,
        # impersonated_service_account), read by the core at first use; the
        # key itself stays out of ADK's models, sessions and events.
        values["use_default_credential"] = True
        values["credentials_file"] = os.path.abspath(os.fspath(service_account_key))
    else:
        raise errors.ConfigurationError(
            "service_account_key must be a dict, the key's JSON text, or a file path,"
            f" not {type(service_account_key).__name__}"
        )
    values.update(fields)
    return ServiceAccount(**values)


# Defaults for the non-secret fields that ADK 1.24.1's model requires and
# that older key files lack.
_KEY_DEFAULTS: Final = {
    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    "token_uri": "https://oauth2.googleapis.com/token",
    "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
    "universe_domain": "googleapis.com",
    "project_id": "",
    "client_id": "",
    "private_key_id": "",
}


def _key_model(info: dict[str, Any], what: str) -> ServiceAccountCredential:
    kind = info.get("type")
    if kind != "service_account":
        raise errors.ConfigurationError(
            f"service_account_key ({what}) has type {kind!r}; only 'service_account' keys"
            " can be given inline. Pass the path of an authorized_user or"
            " impersonated_service_account file instead."
        )
    for field in ("private_key", "client_email"):
        if not info.get(field):
            raise errors.ConfigurationError(
                f"service_account_key ({what}) has no {field!r}: use the JSON key file"
                " downloaded for the service account"
            )
    data = {k: v for k, v in info.items() if k != "type"}
    for field, default in _KEY_DEFAULTS.items():
        data.setdefault(field, default)
    data.setdefault(
        "client_x509_cert_url",
        "https://www.googleapis.com/robot/v1/metadata/x509/" + str(info["client_email"]),
    )
    data["type"] = "service_account"
    return ServiceAccountCredential.model_validate(data)


def id_token_credential(
    audience: str,
    *,
    service_account_key: Any = None,
    impersonate: str | Sequence[str] | None = None,
    delegates: Sequence[str] = (),
    exact: bool = False,
) -> AuthCredential:
    """See :func:`adk_token_exchange.id_token_credential`."""
    if not isinstance(audience, str) or not audience.strip():
        raise errors.ConfigurationError(
            "audience is required: the URL of the receiving service"
            " (e.g. 'https://my-service-xyz.a.run.app')"
        )
    aud = audience if exact else origin_of(audience)
    fields: dict[str, Any] = {"use_id_token": True, "audience": aud}
    if _SCOPES_REQUIRED:
        fields["scopes"] = []
    sa = _service_account(
        service_account_key=service_account_key,
        impersonate=impersonate,
        delegates=delegates,
        fields=fields,
    )
    install()
    return AuthCredential(auth_type=_SA, service_account=sa)


def access_token_credential(
    scopes: Sequence[str] | str = (CLOUD_PLATFORM_SCOPE,),
    *,
    service_account_key: Any = None,
    impersonate: str | Sequence[str] | None = None,
    delegates: Sequence[str] = (),
) -> AuthCredential:
    """See :func:`adk_token_exchange.access_token_credential`."""
    scope_list = [scopes] if isinstance(scopes, str) else list(scopes)
    if not scope_list or not all(isinstance(s, str) and s for s in scope_list):
        raise errors.ConfigurationError(
            f"scopes must be a non-empty list of OAuth scopes, e.g. [{CLOUD_PLATFORM_SCOPE!r}]"
        )
    sa = _service_account(
        service_account_key=service_account_key,
        impersonate=impersonate,
        delegates=delegates,
        fields={"scopes": scope_list},
    )
    install()
    return AuthCredential(auth_type=_SA, service_account=sa)


# --------------------------------------------------------------------------
# install / uninstall

_lock = threading.RLock()
_installed = False
_exchanger: ServiceAccountExchanger | None = None
# class -> (our __init__ wrapper, what it replaced or None if inherited).
_wrapped: dict[type, tuple[Callable[..., None], Any]] = {}
# Objects configured while installed, to restore on uninstall.
_managers: weakref.WeakSet[Any] = weakref.WeakSet()
_auto_exchangers: weakref.WeakSet[Any] = weakref.WeakSet()


def shared_exchanger() -> ServiceAccountExchanger:
    """The process-wide exchanger (one per process: one token cache)."""
    global _exchanger
    exchanger = _exchanger
    if exchanger is None:
        with _lock:
            if _exchanger is None:
                from .exchanger import ServiceAccountExchanger

                _exchanger = ServiceAccountExchanger()
            exchanger = _exchanger
    return exchanger


def is_installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _installed


async def _no_stored_credential(*_args: Any, **_kwargs: Any) -> None:
    return None


def _configure_manager(manager: Any) -> None:
    register = getattr(manager, "register_credential_exchanger", None)
    if register is None:
        return
    register(_SA, shared_exchanger())
    _managers.add(manager)
    config = getattr(manager, "_auth_config", None)
    raw = getattr(config, "raw_auth_credential", None)
    if getattr(raw, "auth_type", None) == _SA and hasattr(manager, "_load_existing_credential"):
        # A stored exchanged token has no expiry ADK can see; ADK 2.x never
        # reloads it for service accounts, 1.24.1 does: exchange every time
        # (served from our cache) instead.
        manager._load_existing_credential = _no_stored_credential


def _stock_exchanger_class() -> type:
    from google.adk.tools.openapi_tool.auth.credential_exchangers import (
        service_account_exchanger as stock_module,
    )

    return stock_module.ServiceAccountCredentialExchanger


def _configure_auto_exchanger(auto: Any) -> None:
    stock = _stock_exchanger_class()
    exchangers = getattr(auto, "exchangers", None)
    if isinstance(exchangers, dict) and exchangers.get(_SA) is stock:
        # Called per exchange as a class; ours constructs cheaply and shares
        # the process-wide cache.
        from .exchanger import ServiceAccountExchanger

        exchangers[_SA] = ServiceAccountExchanger
        _auto_exchangers.add(auto)


def _wrap_init(cls: type, configure: Callable[[Any], None]) -> None:
    if cls in _wrapped:  # still in the chain (someone wrapped on top): inert until now
        return
    original = cls.__dict__.get("__init__")
    base_init = cls.__init__  # type: ignore[misc]

    @functools.wraps(base_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        base_init(self, *args, **kwargs)
        if _installed:
            configure(self)

    cls.__init__ = __init__  # type: ignore[misc]
    _wrapped[cls] = (__init__, original)


def install() -> None:
    """See :func:`adk_token_exchange.install`."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        shared_exchanger()
        from google.adk.auth.credential_manager import CredentialManager
        from google.adk.tools.openapi_tool.auth.credential_exchangers import (
            auto_auth_credential_exchanger as auto_module,
        )

        _wrap_init(CredentialManager, _configure_manager)
        auto_cls = getattr(auto_module, "AutoAuthCredentialExchanger", None)
        if auto_cls is not None:
            _wrap_init(auto_cls, _configure_auto_exchanger)
        _installed = True
        logger.debug("adk-token-exchange installed for ADK service-account credentials")


def uninstall() -> None:
    """See :func:`adk_token_exchange.uninstall`."""
    global _installed
    with _lock:
        if not _installed:
            return
        _installed = False
        for cls, (wrapper, original) in list(_wrapped.items()):
            if cls.__dict__.get("__init__") is not wrapper:
                continue  # someone wrapped on top of us: ours stays, inert
            if original is None:
                delattr(cls, "__init__")
            else:
                cls.__init__ = original  # type: ignore[misc]
            del _wrapped[cls]
        _restore_instances()
        logger.debug("adk-token-exchange uninstalled; ADK's own exchanger is back")


def _restore_instances() -> None:
    stock = _stock_exchanger_class()
    ours = _exchanger
    for manager in list(_managers):
        registry = getattr(manager, "_exchanger_registry", None)
        get = getattr(registry, "get_exchanger", None)
        if get is not None and get(_SA) is ours:
            manager.register_credential_exchanger(_SA, stock())
        if manager.__dict__.get("_load_existing_credential") is _no_stored_credential:
            del manager._load_existing_credential
    _managers.clear()
    from .exchanger import ServiceAccountExchanger

    for auto in list(_auto_exchangers):
        if auto.exchangers.get(_SA) is ServiceAccountExchanger:
            auto.exchangers[_SA] = stock
    _auto_exchangers.clear()
