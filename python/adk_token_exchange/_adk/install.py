"""Registration into ADK: ``install()`` / ``uninstall()`` and the process-wide exchanger.

What ``install()`` touches, exactly (the README says the same):

* every ``CredentialManager`` created afterwards gets the shared
  :class:`~adk_token_exchange.ServiceAccountExchanger` for
  ``AuthCredentialTypes.SERVICE_ACCOUNT`` through ADK's public
  ``register_credential_exchanger``. ADK builds a new exchanger registry per
  manager, so ``CredentialManager.__init__`` is wrapped to do that;
* on ADK 1.24.1 only, such a manager's ``_load_existing_credential`` is
  replaced by a no-op for service-account credentials (1.24.1 would reload a
  stored token past its expiry; 2.x never reloads them);
* ``AutoAuthCredentialExchanger.__init__`` (OpenAPI tools) is wrapped to put
  our class in place of ADK's ``ServiceAccountCredentialExchanger``.

``uninstall()`` restores all of it, including objects configured meanwhile.

Before touching anything, ``install()`` checks that ADK still has the shapes
this relies on (:mod:`.shapes`); if not, it raises, naming the ADK version and
what it expected, and ADK is left as it was: never a silent fall-back to ADK's
own exchanger.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..exchanger import ServiceAccountExchanger
from . import shapes
from .model import SERVICE_ACCOUNT as _SA

__all__ = ["install", "is_installed", "shared_exchanger", "uninstall"]

logger = logging.getLogger("adk_token_exchange")

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
    if not callable(register):
        # Left alone, this manager would use ADK's own exchanger: say so instead.
        shapes.incompatible(
            f"expected {type(manager).__name__}.register_credential_exchanger on every"
            " CredentialManager"
        )
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
        shapes.check()
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
    for auto in list(_auto_exchangers):
        if auto.exchangers.get(_SA) is ServiceAccountExchanger:
            auto.exchangers[_SA] = stock
    _auto_exchangers.clear()
