"""A container's health check: `python -m service.health [--worker]` (or `mlplab health`), exit 0 or 1.

Without --worker: the API on this machine's MLPLAB_PORT answers /readyz with 200. With it: a worker of
this host (a container's hostname) has a heartbeat younger than MLPLAB_LEASE_SECONDS, so a crash-looping
or hung worker is not healthy. Run every few seconds by Docker, it imports only what its check needs:
not the CLI (a second and 100 MB).
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 2.0  # a /readyz answer's wait: with the imports, inside the HEALTHCHECK's 5 s


def _api(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=TIMEOUT_SECONDS):
            return None
    except urllib.error.HTTPError as exc:
        return f"/readyz answered {exc.code}"


def _worker(database_url: str, lease_seconds: float) -> str | None:
    from service.store.db import make_engine, make_sessionmaker, session_scope
    from service.store.queries import live_workers

    engine = make_engine(database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            host = socket.gethostname()
            if any(w.host == host for w in live_workers(session, lease_seconds)):
                return None
    finally:
        engine.dispose()
    return f"no worker of {host} with a heartbeat in the last {lease_seconds:g} s (MLPLAB_LEASE_SECONDS)"


def check(worker: bool) -> int:
    """0 when healthy; 1 with one line why, whatever went wrong (settings included)."""
    try:
        from service.settings import get_settings

        settings = get_settings()
        why = _worker(settings.database_url, settings.lease_seconds) if worker else _api(settings.port)
    except Exception as exc:  # one line: a driver's error carries its SQL on the next
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if why is not None:
        print(f"mlplab health: {why}", file=sys.stderr)
    return 0 if why is None else 1


if __name__ == "__main__":
    sys.exit(check("--worker" in sys.argv[1:]))
