"""The documentation a user reads against what the code does: every setting in docs/settings.md, with
its default, and every relative link in README and docs/ pointing at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support import REPO

ROW = re.compile(r"^\| `(MLPLAB_\w+)` \| (.*?) \|", re.M)


def documented() -> dict[str, str]:
    return dict(ROW.findall((REPO / "docs" / "settings.md").read_text()))


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_settings_page_with_its_default(name):
    rows, field = documented(), Settings.model_fields[name]
    key = f"MLPLAB_{name.upper()}"
    assert key in rows, f"{key} has no row in docs/settings.md"
    default = field.get_default(call_default_factory=True)
    if default is None or isinstance(default, list | bool) or hasattr(default, "get_secret_value"):
        return  # shown in words ("unset", a host list, true/false)
    shown = rows[key].strip("`").replace(",", "")
    if isinstance(default, int | float):
        assert float(shown) == float(default), key
    elif isinstance(default, Path):
        assert Path(shown) == default, key
    else:
        assert shown == str(default), key


def test_the_settings_page_names_no_setting_that_does_not_exist():
    fields = {f"MLPLAB_{name.upper()}" for name in Settings.model_fields}
    assert set(documented()) - fields == set()


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in (REPO / "docs").glob("*.md"))])
def test_relative_links_point_at_files_that_exist(page):
    path = REPO / page if page == "README.md" else REPO / "docs" / page
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{page} links to {target}, which does not exist"
