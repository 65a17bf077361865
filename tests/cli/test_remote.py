"""--url and --token before the command or after it, and a URL the CLI cannot use said so."""

from __future__ import annotations

import pytest

from service.settings import get_settings
from tests.cli.conftest import mlplab


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "http://api.test:9000", "--token", "s3cret", "jobs"],
        ["jobs", "--url", "http://api.test:9000", "--token", "s3cret"],
        ["--url", "http://elsewhere:1", "jobs", "--url", "http://api.test:9000", "--token", "s3cret"],
    ],
)
def test_url_and_token_before_or_after_the_command(api, capsys, argv):
    status, out, err = mlplab(capsys, *argv)
    assert status == 0, err
    assert api.connected == [("http://api.test:9000", "s3cret")]
    assert out.split("  ") == ["ID", "STATUS", "EPOCH", "VALIDATION", "TEST (FINAL)", "SPEC\n"]  # no jobs yet


@pytest.mark.parametrize(
    ("url", "advice"),
    [("localhost:8000", "http://localhost:8000"), ("api.example.org", "http://api.example.org")],
)
def test_a_url_without_a_scheme_is_refused_saying_so(api, capsys, url, advice):
    status, out, err = mlplab(capsys, "--url", url, "jobs")
    assert status == 1 and out == ""
    assert f"--url {url!r} is not a URL" in err and f"give its scheme, e.g. {advice}" in err
    assert "mlplab dev" not in err and api.connected == []


def test_a_url_from_the_environment_is_named_as_such(api, capsys, monkeypatch):
    monkeypatch.setenv("MLPLAB_URL", "127.0.0.1:8000")
    get_settings.cache_clear()
    try:
        status, _, err = mlplab(capsys, "models")
    finally:
        get_settings.cache_clear()
    assert status == 1 and "MLPLAB_URL '127.0.0.1:8000' is not a URL" in err
