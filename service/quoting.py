"""How a problem quotes a client's input back: never more than ECHO_CHARS of any one input (the API's
errors and the study checks, which the worker imports without the API, share it)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from urllib.parse import quote

ECHO_CHARS = 200  # the most of any one input a problem quotes back


def echo(value: object) -> str:
    """A client's input as a problem quotes it: cut to ECHO_CHARS characters, saying how long it was."""
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return f"{value[:ECHO_CHARS]!r}... ({len(value):,} characters)"
    text = _written(value)
    return text if len(text) <= ECHO_CHARS else f"{text[:ECHO_CHARS]}... ({len(text):,} characters)"


class _Text(str):
    """Punctuation _written writes as it is: not a client's string, which it quotes."""


def _written(value: object) -> str:
    """repr(value), but null, true, false, NaN and Infinity as the client wrote them in JSON (Python's None,
    True, False, nan, inf); strings quoted as pydantic's own messages quote them ('relu')."""
    out: list[str] = []
    todo: list[object] = [value]
    while todo:  # a stack, not recursion: a client nests as deep as the JSON parser lets it
        item = todo.pop()
        if isinstance(item, _Text):
            out.append(item)
        elif item is None or isinstance(item, bool):
            out.append({None: "null", True: "true", False: "false"}[item])
        elif isinstance(item, float) and not math.isfinite(item):
            out.append("NaN" if math.isnan(item) else "Infinity" if item > 0 else "-Infinity")
        elif isinstance(item, (list, tuple, dict)):
            pairs = (
                [[k, _Text(": "), v] for k, v in item.items()]
                if isinstance(item, dict)
                else [[v] for v in item]
            )
            inner = [part for i, pair in enumerate(pairs) for part in ([_Text(", ")] if i else []) + pair]
            brackets = "{}" if isinstance(item, dict) else "[]"
            todo.extend(reversed([_Text(brackets[0]), *inner, _Text(brackets[1])]))
        else:
            out.append(repr(item))
    return "".join(out)


def cut(text: str) -> str:
    """`text` (a name that holds a client's key), past ECHO_CHARS cut with "...", and a character no terminal
    should act on (control, bidi: not str.isprintable) escaped as Python writes it: \\x1b, \\u202e."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= ECHO_CHARS else f"{text[:ECHO_CHARS]}..."


def url_quoted(text: str) -> str:
    """A request's path as a URL writes it, percent-encoded as uvicorn's access log writes it:
    no control or bidi character reaches a terminal that prints a problem or a log line."""
    return cut(quote(text, safe="!$&'()*+,;=:@/-._~"))


def listed_again(shown: str, times: int) -> str:
    """A sweep's or study's value listed `times` times over, as the spec stores it (1 and 1.0 alike)."""
    return f"{shown} is listed {'twice' if times == 2 else f'{times} times'} (as the spec stores it)"


def counted(n: int, noun: str) -> str:
    """'1 epoch', '3 epochs', '1,000 jobs': a count and its noun, agreeing."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def did_you_mean(name: object, names: Iterable[str]) -> str:
    """For a name that is not one of `names`: "; did you mean <the nearest>?", or else the names (or that
    there are none)."""
    names = list(names)
    if not names:
        return "; it takes no fields: send {} or no body"
    near = difflib.get_close_matches(str(name), names, n=1)
    return f"; did you mean {near[0]}?" if near else f"; the fields are {', '.join(names)}"
