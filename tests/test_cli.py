"""The `mlplab` command's parts that need no server: its flags and its reading of event streams."""

from __future__ import annotations

import pytest

from service.cli import main
from service.cli.http import Event, parse_sse
from service.ml.spec import TrainSpec


def test_submit_has_a_flag_for_every_spec_field(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    help_text = capsys.readouterr().out
    for field in TrainSpec.model_fields:
        assert f"--{field.replace('_', '-')}" in help_text


def test_submit_refuses_a_malformed_layer_list_before_calling_the_api(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--backend", "numpy", "--hidden-layers", "500,x", "--url", "http://127.0.0.1:9"])
    assert exit_.value.code == 2
    assert "give comma-separated integers, e.g. 500,250,100" in capsys.readouterr().err


def test_events_are_read_from_the_stream_format():
    lines = [
        "retry: 2000",
        "",
        ": keep-alive",
        "",
        "event: progress",
        "id: 10-0",
        'data: {"step": 10}',
        "",
        "event: end",
        "data: [1,",
        "data: 2]",
        "",
    ]
    assert list(parse_sse(lines)) == [Event("progress", {"step": 10}, "10-0"), Event("end", [1, 2], None)]
