"""The ADK adapter: everything that depends on ADK's version, in one place.

One-way graph, top to bottom (a module imports only those below it)::

    install      registration into ADK; owns the process-wide exchanger
    credentials  id_token_credential / access_token_credential: ADK's model, built
    model        reading ADK's model into a core request; building ADK's result
    errors       our exceptions as ADK's CredentialExchangeError family
    shapes       what this adapter expects of ADK, checked (here, at import, and
                 by install()) so that a changed ADK fails loudly with its version

``exchanger.py`` (the public ``ServiceAccountExchanger``) sits between
``install`` and ``model``. Per ADK version:

* ``ServiceAccount.use_id_token`` / ``audience`` are model fields from ADK 1.26;
  on 1.24.1 they arrive as pydantic extras (``model_extra``), as do our own
  extras ``impersonate``, ``delegates`` and ``credentials_file`` on every
  version. Fields are read by attribute or ``__dict__``, never through
  ``model_dump(by_alias=True)`` (camelCase keys).
* ADK 1.24.1's ``ServiceAccount`` requires ``scopes``; the helpers pass
  ``scopes=[]`` for ID tokens.
* ADK 1.24.1's ``CredentialManager`` reloads an exchanged service-account
  credential from the credential service instead of exchanging again, so a
  token would be served past its expiry; 2.x skips that step for service
  accounts. ``install()`` makes 1.24.1 skip it too.
"""

from . import shapes as _shapes

# Before any module of the adapter reads ADK: a changed ADK is named here, not
# met as a KeyError or AttributeError deep inside.
_shapes.check()
