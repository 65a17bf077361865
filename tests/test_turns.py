"""service.turns: a client's share of a queue, counted per piece of work."""

from __future__ import annotations

import contextvars
from contextlib import ExitStack

import pytest

from service.turns import CLIENT, CLIENT_KEY_CHARS, QueueFull, Turns, client_key


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


def test_a_client_is_keyed_by_its_address_its_ipv6_block_or_a_bounded_digest():
    """Every IPv6 address of one host was a share of its own (a /64 holds 2**64), and a 100-character
    address a trusted proxy forwarded failed PostgreSQL's 64-character column with a 500."""
    assert client_key("10.0.0.1") == "10.0.0.1" and client_key("::1") == "::1"
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1"  # IPv4 seen through an IPv6 socket
    assert client_key("unix-socket-peer") == "unix-socket-peer"
    long = client_key("x" * 100)
    assert long.startswith("sha256:") and len(long) == CLIENT_KEY_CHARS and long != client_key("y" * 100)
