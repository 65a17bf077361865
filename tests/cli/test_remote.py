"""--url and --token before the command or after it, a URL the CLI cannot use said so, and a server
that is not mlplab's API said so."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from service.cli import client, http
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
    assert status == 2 and out == ""
    assert f"--url {url!r} is not a URL" in err and f"give its scheme, e.g. {advice}" in err
    assert "mlplab dev" not in err and api.connected == []


def test_a_url_from_the_environment_is_named_as_such(api, capsys, monkeypatch):
    monkeypatch.setenv("MLPLAB_URL", "127.0.0.1:8000")
    get_settings.cache_clear()
    try:
        status, _, err = mlplab(capsys, "models")
    finally:
        get_settings.cache_clear()
    assert status == 2 and "MLPLAB_URL '127.0.0.1:8000' is not a URL" in err


BAD_URLS = [
    ("http://[::1", "Invalid IPv6 URL"),
    ("http://127.0.0.1:abc", "Port could not be cast to integer value as 'abc'"),
    ("http://127.0.0.1:99999", "Port out of range 0-65535"),
    ("http://127.0.0.1:0", "its port must be from 1 to 65535"),
    ("http://:8000", "give its host, e.g. http://127.0.0.1:8000"),
    # an attacker's pass: a traceback from the resolver's encoding of the host name
    ("http://a..b", "encoding with 'idna' codec failed (UnicodeError: label empty or too long)"),
    (f"http://{'a' * 64}.test", "encoding with 'idna' codec failed (UnicodeError: label empty or too long)"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
@pytest.mark.parametrize("command", [["jobs"], ["watch", "1"], ["submit", "--backend", "numpy"]])
def test_a_malformed_url_is_a_usage_error_naming_it(api, capsys, url, reason, command):
    status, out, err = mlplab(capsys, "--url", url, *command)
    assert (status, out, err) == (2, "", f"mlplab: --url {url!r} is not a URL: {reason}\n")
    assert api.connected == []


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_a_malformed_url_from_the_environment_is_a_usage_error_naming_it(
    api, capsys, monkeypatch, url, reason
):
    monkeypatch.setenv("MLPLAB_URL", url)
    get_settings.cache_clear()
    try:
        status, out, err = mlplab(capsys, "models")
    finally:
        get_settings.cache_clear()
    assert (status, out, err) == (2, "", f"mlplab: MLPLAB_URL {url!r} is not a URL: {reason}\n")
    assert api.connected == []


def test_a_url_with_a_query_is_refused_and_a_password_is_never_printed(api, capsys):
    """An attacker's pass: http://host?x=1 sent GET /?limit=50 for `mlplab jobs`; a URL's password was
    printed in 'cannot reach the API at http://user:secret@...'."""
    status, _, err = mlplab(capsys, "--url", "http://127.0.0.1:8000?x=1", "jobs")
    assert status == 2 and "is not the API's address: it has a query or fragment" in err, err
    _, _, err = mlplab(capsys, "--url", "http://user:secret@[::1", "jobs")
    assert "secret" not in err and "'http://user:***@[::1' is not a URL" in err, err
    assert api.connected == []
    _, _, err = mlplab(capsys, "--url", "user:secret@127.0.0.1:8000", "jobs")  # no scheme
    assert "secret" not in err and "user:***@127.0.0.1:8000" in err, err
    # and where it cannot be reached, or answers oddly: the client's messages show this form
    assert client.ApiClient("http://user:secret@127.0.0.1:1").shown == "http://user:***@127.0.0.1:1"
    assert http.shown_url("http://u:p@ss@host/a@b") == "http://u:***@host/a@b"  # to the last @ of the host


def test_a_proxys_answer_names_the_url_without_its_password(elsewhere, capsys):
    elsewhere(lambda request: httpx.Response(502, text="<html>Bad Gateway</html>"))
    status, _, err = mlplab(capsys, "--url", "http://user:secret@proxy.test", "jobs")
    assert status == 1 and "secret" not in err and "http://user:***@proxy.test/jobs" in err, err


def _commands(tmp_path) -> list[list[str]]:
    """Every client command, with what each needs on disk."""
    (tmp_path / "digit.png").write_bytes(b"\x89PNG")
    (tmp_path / "sweep.json").write_text(json.dumps({"base": {"backend": "numpy"}, "grid": {"seed": [0]}}))
    study = {"base": {"backend": "numpy"}, "space": {"l2": {"float": [0, 0.1]}}}
    (tmp_path / "study.json").write_text(json.dumps(study))
    return [
        ["submit", "--backend", "numpy"],
        ["submit", "--backend", "numpy", "--watch"],
        ["watch", "1"],
        ["cancel", "1"],
        ["jobs"],
        ["jobs", "--sweep", "3f9c"],
        ["models"],
        ["compare", "1", "2"],
        ["predict", str(tmp_path / "digit.png"), "--model", "1"],
        ["sweep", str(tmp_path / "sweep.json")],
        ["sweeps", "3f9c"],
        ["study", str(tmp_path / "study.json")],
        ["study", "show", "1"],
        ["study", "cancel", "1"],
        ["alias", "champion"],
        ["alias", "champion", "1"],
        ["alias", "champion", "--sweep", "3f9c"],
        ["alias", "champion", "--study", "1"],
        ["alias", "champion", "--rollback"],
    ]


NOT_MLPLAB = [
    ("text/plain", b"hello", "its body is text/plain: 'hello'"),
    ("text/html; charset=utf-8", b"<html>Sign in</html>", "its body is text/html: '<html>Sign in</html>'"),
    ("application/json", b'{"foo": 1}', "no "),  # the first key (or header) the command reads
    ("application/json", b"[1, 2]", "its JSON is [1, 2], not an object"),
]


@pytest.mark.parametrize(("kind", "body", "what"), NOT_MLPLAB)
def test_every_command_says_when_the_server_is_not_mlplabs_api(elsewhere, capsys, tmp_path, kind, body, what):
    requests: list[str] = []

    def proxy(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        return httpx.Response(200, content=body, headers={"content-type": kind})

    elsewhere(proxy)
    for command in _commands(tmp_path):
        requests.clear()
        status, out, err = mlplab(capsys, "--url", "http://proxy.test:8080", *command)
        assert (status, out) == (1, ""), (command, err)
        said = f"mlplab: {requests[-1]} answered 200 but not with mlplab's JSON: is it an mlplab API (--url, MLPLAB_URL)? ("
        assert err.startswith(said + what) and err.endswith(")\n") and err.count("\n") == 1, command
        assert requests[-1].startswith("http://proxy.test:8080/"), command


def _job(status: str) -> dict:
    progress = {"epoch": 1, "epochs": 1, "step": 8, "steps": 8, "loss": 0.5}
    return {"id": 1, "name": "numpy,16", "status": status, "spec": {"epochs": 1}, "progress": progress}


@pytest.mark.parametrize(
    ("kind", "stream", "what"),
    [
        ("text/html", b"<html>Sign in</html>", "its body is text/html, not an event stream"),
        ("text/event-stream", b"event: status\ndata: hello\n\n", "an event's data is not JSON: 'hello'"),
        ("text/event-stream", b"event: end\ndata: {}\n\n", "no 'status' in its JSON"),
    ],
)
def test_watch_says_when_the_event_stream_is_not_mlplabs(elsewhere, capsys, kind, stream, what):
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jobs/1":
            return httpx.Response(200, json=_job("running"))
        return httpx.Response(200, content=stream, headers={"content-type": kind})

    elsewhere(server)
    status, out, err = mlplab(capsys, "--url", "http://proxy.test", "watch", "1")
    assert (status, out) == (1, "")
    assert err == (
        "mlplab: http://proxy.test/jobs/1/events answered 200 but not with mlplab's JSON: "
        f"is it an mlplab API (--url, MLPLAB_URL)? ({what})\n"
    )


@pytest.mark.parametrize(("status", "body"), [(404, b""), (502, b"<html>Bad Gateway</html>")])
def test_an_error_that_is_not_mlplabs_problem_says_where_it_came_from(elsewhere, capsys, status, body):
    """`mlplab --url` at another server: 'mlplab: Not Found (404): ', its detail empty."""
    elsewhere(lambda request: httpx.Response(status, content=body, headers={"content-type": "text/html"}))
    code, out, err = mlplab(capsys, "--url", "http://proxy.test", "jobs")
    assert (code, out) == (1, "")
    assert err.startswith("mlplab: http://proxy.test/jobs") and f"answered {status} " in err, err
    assert "but not with mlplab's problem JSON" in err and "is it an mlplab API (--url, MLPLAB_URL)" in err
    assert ("its body is empty" if not body else "its body is text/html: '<html>Bad Gateway") in err


def _endless(start: bytes) -> Iterator[bytes]:
    yield start
    while True:
        yield b"x" * 65_536


@pytest.mark.parametrize(
    ("argv", "path", "start", "what"),
    [
        (["jobs"], "/jobs", b'{"data": ["', "its answer went past 1,048,576 bytes"),
        (
            ["watch", "1"],
            "/jobs/1/events",
            b"data: ",
            "an event stream's line went past 1,048,576 characters",
        ),
    ],
)
def test_an_answer_without_end_is_refused_past_a_bound(
    elsewhere, capsys, monkeypatch, argv, path, start, what
):
    """A server that sent without end (a JSON answer, one line of an event stream) was read into the CLI's
    memory until it ran out."""
    monkeypatch.setattr(http, "MAX_ANSWER_BYTES", 2**20)
    monkeypatch.setattr(http, "MAX_EVENT_LINE", 2**20)

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jobs/1":
            return httpx.Response(200, json=_job("running"))
        kind = "text/event-stream" if path.endswith("events") else "application/json"
        return httpx.Response(200, content=_endless(start), headers={"content-type": kind})

    elsewhere(server)
    status, out, err = mlplab(capsys, "--url", "http://proxy.test", *argv)
    assert (status, out) == (1, "") and f"proxy.test{path}" in err and what in err, err


def test_predict_reads_no_more_of_an_image_than_any_upload_can_be(elsewhere, capsys, monkeypatch):
    monkeypatch.setattr(client, "MAX_IMAGE_BYTES", 2**20)
    elsewhere(lambda request: pytest.fail("sent"))
    status, _, err = mlplab(capsys, "--url", "http://proxy.test", "predict", "/dev/zero", "--model", "1")
    assert status == 2 and "/dev/zero is past 1,048,576 bytes" in err, err


@pytest.mark.parametrize("command", ["sweep", "study"])
def test_a_sweep_or_study_file_is_read_no_further_than_a_json_file_can_be(
    elsewhere, capsys, monkeypatch, command
):
    """An attacker's pass: `mlplab study /dev/zero` took the client to 6 GB, reading it all."""
    monkeypatch.setattr(client, "MAX_JSON_FILE_BYTES", 2**20)
    elsewhere(lambda request: pytest.fail("sent"))
    status, _, err = mlplab(capsys, "--url", "http://proxy.test", command, "/dev/zero")
    assert status == 2 and "/dev/zero is past 1,048,576 bytes, the most mlplab reads of a JSON file" in err, (
        err
    )


def test_predict_prints_no_model_id_header_that_is_not_digits(elsewhere, capsys, tmp_path):
    """X-Model-Id '1\\x9b2J' (a C1 escape sequence: clear the screen) was printed and put in a path."""
    image = tmp_path / "digit.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    answer = {"predicted": 1, "probabilities": [0.1] * 10}
    headers = [(b"x-model-id", "1\x9b2J".encode())]
    elsewhere(lambda request: httpx.Response(200, json=answer, headers=headers))
    status, out, err = mlplab(capsys, "--url", "http://proxy.test", "predict", str(image), "--model", "1")
    assert (status, out) == (1, "") and "no X-Model-Id header of digits" in err and "\x9b" not in err, err


def test_an_answer_with_values_of_the_wrong_kind_is_one_line_not_a_traceback(elsewhere, capsys):
    """A job whose progress was null (an older API, or another server) ended `mlplab jobs` in a traceback."""
    job = _job("running") | {"progress": None}
    elsewhere(lambda request: httpx.Response(200, json={"data": [job], "count": 1}))
    status, out, err = mlplab(capsys, "--url", "http://proxy.test", "jobs")
    assert (status, out) == (1, "") and "Traceback" not in err, err
    assert err.startswith(
        "mlplab: an answer from http://proxy.test holds a value mlplab does not expect (TypeError"
    )
    assert "client.py:" in err and "is it an mlplab API of this version" in err
