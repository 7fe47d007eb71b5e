"""Mistakes a user can make with the public API; ``test_typing.py`` expects
``mypy --strict`` to report each line marked ``# expect: <error code>``, and
nothing else. Never run.
"""

from __future__ import annotations

from typing import reveal_type

import adk_token_exchange
from adk_token_exchange import errors
from adk_token_exchange._native import Credentials
from adk_token_exchange.auth_provider import GoogleIdTokenAuthScheme

adk_token_exchange.id_token_credential(8080)  # expect: arg-type
adk_token_exchange.access_token_credential(scopes=None)  # expect: arg-type
adk_token_exchange.id_token_credential("https://svc.a.run.app", exact="yes")  # expect: arg-type
GoogleIdTokenAuthScheme(audience=8080)  # expect: arg-type
token = Credentials.application_default().id_token("https://svc.a.run.app")
port: int = token.value  # expect: assignment
adk_token_exchange.configure(request_timeout="10s")  # expect: arg-type
caught: type[ValueError] = errors.TokenExchangeError  # expect: assignment
reveal_type(adk_token_exchange.id_token_credential)
