"""service.turns: a client's share of a queue, counted per piece of work."""

from __future__ import annotations

import contextvars
from contextlib import ExitStack

import pytest

from service.turns import CLIENT, QueueFull, Turns


def _places(turns: Turns, client: str | None, works: list[object]) -> list[int | None]:
    """Take a place for each work as `client` (in a context of its own); the status of each refusal."""

    def run() -> list[int | None]:
        CLIENT.set(client)
        refused: list[int | None] = []
        with ExitStack() as held:
            for work in works:
                try:
                    held.enter_context(turns.place(work))
                    refused.append(None)
                except QueueFull as exc:
                    refused.append(exc.status)
        return refused

    return contextvars.copy_context().run(run)


@pytest.mark.parametrize(
    ("client", "works", "refused"),
    [
        ("10.0.0.1", ["a", "b", "c"], [None, None, 429]),
        ("10.0.0.1", ["a", "a", "a", "b"], [None] * 4),  # one figure asked for again: one place
        ("", ["a", "b", "c"], [None, None, 429]),  # no address (a Unix socket): one client, with its share
        (None, ["a", "b", "c"], [None] * 3),  # the process's own work: no share
    ],
)
def test_a_clients_share_counts_its_pieces_of_work(client, works, refused):
    turns = Turns(4, "full", "full", 1, 2, "mine")
    assert _places(turns, client, works) == refused
    assert not turns.shares.held and not turns.shares.asking  # every place given back
