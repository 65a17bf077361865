"""`mlplab alias NAME [MODEL | --sweep ID | --study ID | --rollback | --delete]`: point a name at a model
(or at a sweep's or a study's best), move it back, remove it, or show it with its history; `mlplab
aliases`: every name and its model."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import quote

from service.cli.client import Json, UsageError, flags_named, table
from service.cli.http import ApiClient, ApiError, answer


def _named(alias: Json) -> str:
    back = f"; rollback to model {alias['rollback_to']}" if alias["rollback_to"] is not None else ""
    return f"{alias['name']} -> model {alias['model_id']}{back}"


def _history(alias: Json) -> str:
    rows = [
        [e["at"][:19].replace("T", " "), e["action"], e["from_model_id"] or "-", e["to_model_id"] or "-", e["detail"] or ""]
        for e in alias["history"]
    ]  # fmt: skip
    return table(["AT", "ACTION", "FROM", "TO", "DETAIL"], rows)


def _naming(client: ApiClient, path: str) -> int | None:
    """The model the alias at `path` names (None: there is no such alias yet)."""
    try:
        return int(client.get(path)["model_id"])
    except ApiError as exc:
        if exc.status != 404:
            raise
        return None


def _removed(client: ApiClient, path: str) -> Json | None:
    """The history of a removed alias (a page of it); None for a name that never was one."""
    try:
        return client.get(f"{path}/history")
    except ApiError as exc:
        if exc.status != 404:
            raise
        return None


def _delete(client: ApiClient, path: str, name: str) -> int:
    """Remove the alias if it still names the model it named when read (If-Match), and say which."""
    read = client.response("GET", path)
    named = answer(read)["model_id"]
    try:
        client.response("DELETE", path, headers={"If-Match": read.headers["etag"]})
    except ApiError as exc:
        if exc.status == 412:
            exc.detail = f"{name} changed since it was read (it named model {named}): not removed."
        raise
    print(f"{name} removed (it named model {named}); its history stays")
    return 0


def cmd_alias(client: ApiClient, args: argparse.Namespace) -> int:
    if not args.name.strip():
        raise UsageError("the alias is empty: lowercase letters, digits and dashes, e.g. champion")
    path = f"/aliases/{quote(args.name, safe='')}"
    with flags_named({"path.alias": "NAME", "body.alias": "NAME", "body.model_id": "MODEL"}):
        promoting = args.sweep is not None or args.study is not None
        before = _naming(client, path) if promoting else None
        if args.sweep is not None:
            alias = client.post(f"/sweeps/{quote(args.sweep, safe='')}/promote", json={"alias": args.name})
        elif args.study is not None:
            alias = client.post(f"/studies/{args.study}/promote", json={"alias": args.name})
        elif args.rollback:
            alias = client.post(f"{path}/rollback")
        elif args.delete:
            return _delete(client, path, args.name)
        elif args.model is not None:
            model: int | str = int(args.model) if args.model.isdigit() else args.model
            alias = client.request("PUT", path, json={"model_id": model})
        else:
            try:
                alias = client.get(path)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                if removed := _removed(client, path):  # what it named, as "its history stays" promised
                    print(_history({"history": removed["data"]}))
                exc.detail += f" Make it with: mlplab alias {args.name} MODEL (or --sweep ID, --study ID)"
                raise
    print(_named(alias))
    if promoting:  # which model that is, and what the search says of it
        if alias["model_id"] != before:
            print(alias.get("detail") or "", file=sys.stderr)  # .get: an API older than the field
        else:  # it named that model already: nothing was written, and its detail is an older change's
            print(f"{args.name} already named model {alias['model_id']}: unchanged", file=sys.stderr)
    if alias.get("warning"):
        print(f"! {alias['warning']}", file=sys.stderr)
    if "history" in alias:  # the alias shown, not moved
        print(_history(alias))
        if alias["history_count"] > len(alias["history"]):
            print(
                f"the latest {len(alias['history'])} of {alias['history_count']} changes: {path}/history pages them"
            )
    return 0


def add_alias_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the alias: lowercase letters, digits and dashes (champion, staging)")
    to = parser.add_mutually_exclusive_group()
    to.add_argument("model", nargs="?", help="the model to name: its (job) id or another alias")
    to.add_argument("--sweep", metavar="SWEEP_ID", help="the sweep's best model, by validation accuracy")
    to.add_argument("--study", type=int, metavar="STUDY_ID", help="the study's best trial's model")
    to.add_argument("--rollback", action="store_true", help="back to the model it named before")
    to.add_argument("--delete", action="store_true", help="remove the name (its history stays)")


def cmd_aliases(client: ApiClient, args: argparse.Namespace) -> int:
    """Every alias: the model it names, when it last moved, what a rollback would name."""
    page = client.get("/aliases")
    rows = [
        [a["name"], a["model_id"], a["updated_at"][:19].replace("T", " "), a["rollback_to"] or "-"]
        for a in page["data"]
    ]
    print(table(["ALIAS", "MODEL", "UPDATED (UTC)", "ROLLBACK TO"], rows))
    for alias in page["data"]:
        if alias.get("warning"):
            print(f"! {alias['name']}: {alias['warning']}", file=sys.stderr)
    if not rows:
        print("no aliases yet: mlplab alias NAME MODEL makes one", file=sys.stderr)
    elif page["count"] > len(rows):
        print(
            f"the first {len(rows)} of {page['count']} aliases: GET /aliases?offset= pages them",
            file=sys.stderr,
        )
    return 0
