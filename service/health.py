"""A container's health check: `python -m service.health [--worker]` (or `mlplab health`), exit 0 or 1.

Without --worker: the API on this machine's MLPLAB_HOST and MLPLAB_PORT (not --url: a container checks
itself) answers /readyz with 200. With it: a worker of this host (a container's hostname) has a heartbeat
younger than MLPLAB_LEASE_SECONDS, so a crash-looping or hung worker is not healthy. Run every few
seconds by Docker, it imports only what its check needs: not the CLI (a second and 100 MB).
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_SECONDS = 2.0  # a /readyz answer's wait: with the imports, inside the HEALTHCHECK's 5 s


def _api(host: str, port: int) -> str | None:
    """Where the API listens (MLPLAB_HOST; every interface: this machine's loopback), without a proxy."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # http_proxy took 127.0.0.1 away
    url = f"http://{netloc}/readyz"
    try:
        with direct.open(url, timeout=TIMEOUT_SECONDS):
            return None
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:  # refused, timed out: say where it asked
        reason = getattr(exc, "reason", exc)
        return f"no answer from {url} (this machine's API, at MLPLAB_HOST and MLPLAB_PORT): {reason}"


def _worker(database_url: str, lease_seconds: float) -> str | None:
    from sqlalchemy.engine import make_url

    from service.store.db import make_engine, make_sessionmaker, session_scope
    from service.store.queries import live_workers

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return f"no database at {url.database} (MLPLAB_DATABASE_URL)"  # and a check creates none

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
        if worker:
            why = _worker(settings.database_url, settings.lease_seconds)
        else:
            why = _api(settings.host, settings.port)
    except Exception as exc:  # one line: a driver's error carries its SQL on the next
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if why is not None:
        print(f"mlplab health: {why}", file=sys.stderr)
    return 0 if why is None else 1


if __name__ == "__main__":
    sys.exit(check("--worker" in sys.argv[1:]))
