"""Cut a process off from real Google: the one definition tests, scripts, the demo and
benchmarks share.

Isolated means: a throwaway ``HOME`` and ``CLOUDSDK_CONFIG`` (no gcloud login,
no ADC file), none of the variables in :data:`UNSET_VARIABLES` (no key file,
no project), the metadata server variables and our IAM endpoint pointed at a
loopback port that is bound but never listens (connections are refused at
once and nothing else can take the port), a ``gcloud`` stand-in first on
``PATH`` that fails like a missing gcloud, and loopback exempt from proxies.
From the command line it also runs the command in a new network namespace
with nothing but loopback (``unshare -n``), where the kernel allows it::

    python3 python/adk_token_exchange/testing/isolation.py pytest -q   # scripts/isolated

In-process (pytest fixtures, the demo) use :class:`ClosedPort`,
:func:`gcloud_stand_in` and :func:`isolated_environ`.

Standard library only and no package-relative imports: ``scripts/isolated``
runs this file with any ``python3``, before (or without) a build of the package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "UNSET_VARIABLES",
    "ClosedPort",
    "gcloud_stand_in",
    "isolated",
    "isolated_environ",
    "main",
]

UNSET_VARIABLES = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
    "GCE_METADATA_ROOT",
    "NO_GCE_CHECK",
    "GOOGLE_API_CERTIFICATE_CONFIG",
)
"""Variables that could lead google-auth, gcloud or our core to real credentials or a
real project; removed from an isolated environment."""

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_IN_NAMESPACE = "--in-network-namespace"
_GCLOUD_STAND_IN = (
    '#!/bin/sh\necho "gcloud is disabled in this isolated environment" >&2\nexit 127\n'
)


class ClosedPort:
    """A loopback TCP port that is bound and never listens, held while open.

    A connect to it is refused at once (no SYN is ever accepted), and as long
    as this object holds the binding no server can start on it: the metadata
    variables can never reach something that happens to listen there.
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])

    @property
    def authority(self) -> str:
        """``127.0.0.1:PORT``, for ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP``."""
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Release the port."""
        self._socket.close()

    def __enter__(self) -> ClosedPort:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def gcloud_stand_in(directory: str | os.PathLike[str]) -> Path:
    """Write a ``gcloud`` that exits 127 like a missing command; returns its directory.

    It is put first on ``PATH`` rather than dropping directories from it, since
    gcloud may live in ``/usr/bin`` beside everything else.
    """
    bin_dir = Path(directory)
    bin_dir.mkdir(parents=True, exist_ok=True)
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(_GCLOUD_STAND_IN)
    gcloud.chmod(0o755)
    return bin_dir


def isolated_environ(
    base: Mapping[str, str],
    *,
    home: str | os.PathLike[str],
    cloudsdk_config: str | os.PathLike[str],
    closed_authority: str,
    bin_dir: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """``base`` with real Google out of reach (see the module docstring).

    Args:
        base: The environment to start from, e.g. ``os.environ``.
        home: The throwaway ``HOME``.
        cloudsdk_config: The throwaway gcloud configuration directory.
        closed_authority: ``host:port`` where nothing listens (:class:`ClosedPort`).
        bin_dir: Directory of the ``gcloud`` stand-in, put first on ``PATH``.
    """
    env = {name: value for name, value in base.items() if name not in UNSET_VARIABLES}
    env["HOME"] = os.fspath(home)
    env["CLOUDSDK_CONFIG"] = os.fspath(cloudsdk_config)
    env["GCE_METADATA_HOST"] = closed_authority
    env["GCE_METADATA_IP"] = closed_authority
    # Explicit impersonation calls IAM Credentials here; a test that wants it
    # points this at its emulator.
    env["ADK_TOKEN_EXCHANGE_IAM_ENDPOINT"] = f"http://{closed_authority}"
    if bin_dir is not None:
        env["PATH"] = os.pathsep.join(filter(None, [os.fspath(bin_dir), base.get("PATH", "")]))
    # A proxy in the environment must not see (or break) loopback traffic.
    for name in ("NO_PROXY", "no_proxy"):
        present = [p for p in base.get(name, "").split(",") if p]
        env[name] = ",".join(dict.fromkeys([*present, *_LOOPBACK_NAMES]))
    return env


@contextlib.contextmanager
def isolated(base: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """An isolated environment with its own temporary directories and closed port.

    The directories are removed and the port released on exit.
    """
    with (
        tempfile.TemporaryDirectory(prefix="adk-token-exchange-isolated-") as root,
        ClosedPort() as closed,
    ):
        home, gcloud = Path(root, "home"), Path(root, "gcloud")
        home.mkdir()
        gcloud.mkdir()
        yield isolated_environ(
            os.environ if base is None else base,
            home=home,
            cloudsdk_config=gcloud,
            closed_authority=closed.authority,
            bin_dir=gcloud_stand_in(Path(root, "bin")),
        )


def _network_namespace_available() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = ["unshare", "-n", "ip", "link", "set", "lo", "up"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def main(argv: Sequence[str] | None = None) -> int:
    """``isolation.py CMD ARGS...``: run CMD isolated; returns its exit code.

    Re-executes itself inside ``unshare -n`` (bringing loopback up there) when
    the kernel allows, so that the closed port is reserved in the namespace the
    command runs in; otherwise isolates by environment only, and says so.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    inside = bool(args) and args[0] == _IN_NAMESPACE
    if inside:
        args = args[1:]
    if not args:
        print("usage: isolated CMD [ARGS...]", file=sys.stderr)
        return 2
    if inside:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    elif _network_namespace_available():
        sys.stdout.flush()
        here = os.path.abspath(__file__)
        os.execvp("unshare", ["unshare", "-n", sys.executable, "-I", here, _IN_NAMESPACE, *args])
    else:
        print("(unshare -n unavailable: isolated by environment only)", file=sys.stderr)
    with isolated() as env:
        try:
            child = subprocess.Popen(args, env=env)
        except FileNotFoundError:
            print(f"isolated: command not found: {args[0]}", file=sys.stderr)
            return 127
        # Whoever stops this wrapper stops the command too (and the cleanup runs).
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda number, _frame: child.send_signal(number))
        try:
            return child.wait()
        except KeyboardInterrupt:  # the command got the same SIGINT from the terminal
            return child.wait()


if __name__ == "__main__":
    raise SystemExit(main())
