"""What the tests share, in one place.

- :mod:`.core`: the native core with known settings (:func:`~.core.clean_core`),
  credentials from a key dict, awaiting the core's async methods;
- :mod:`.peers`: hostile loopback servers (hang, drip, stream forever, canned bytes);
- :mod:`.measure`: elapsed time, waiting for an event, joining threads, memory;
- :mod:`.processes`: running a test in a child pytest (deadlock watchdog, fresh process);
- :mod:`.leaks`: everything an exception shows, for secret scans;
- :mod:`.paths`: where the repository is.

Isolation from real Google is not here: it is ``adk_token_exchange.testing.isolation``,
shared with the scripts (``tests/conftest.py`` applies it to every test).
"""
