"""The docs stay true to the code: columns, knobs, MAV fields, commands and links."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from trailhouse import settings
from trailhouse.cli.main import build_parser
from trailhouse.config import Mav
from trailhouse.warehouse.schema import COLUMNS

DOCS = settings.PROJECT_ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"
SCHEMA = DOCS / "schema.md"
OPERATIONS = DOCS / "operations.md"
SETTINGS_PY = settings.PROJECT_ROOT / "include" / "trailhouse" / "settings.py"

ROW_NAME = re.compile(r"^\|\s*`([^`]+)`\s*\|")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _section(path: Path, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    text = path.read_text()
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        pytest.fail(f"{path.name} has no heading {heading!r}")
    out = []
    for line in lines[start + 1 :]:
        m = re.match(r"^(#+) ", line)
        if m and len(m.group(1)) <= level:
            break
        out.append(line)
    return "\n".join(out)


def _row_names(text: str) -> list[str]:
    """First-cell names of the table rows in `text` (header and rule rows have none)."""
    return [m.group(1) for line in text.splitlines() if (m := ROW_NAME.match(line))]


def test_schema_table_has_one_row_per_column_in_order() -> None:
    rows = _row_names(_section(SCHEMA, "## Columns of `cloudtrail_events`"))
    names = [c.name for c in COLUMNS]
    assert sorted(set(rows) - set(names)) == [], "rows naming columns that do not exist"
    assert sorted(set(names) - set(rows)) == [], "columns without a row"
    assert rows == names, "rows out of the order of schema.COLUMNS, or repeated"


def _settings_env_vars() -> set[str]:
    tree = ast.parse(SETTINGS_PY.read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"TRAILHOUSE_\w+", node.value)
    }


def test_every_settings_env_var_is_documented() -> None:
    variables = _settings_env_vars()
    assert "TRAILHOUSE_HOME" in variables  # the parse found the knobs at all
    rows = set(_row_names(_section(ARCHITECTURE, "### 1. Environment knobs (`settings.py`)")))
    assert sorted(variables - rows) == []


def test_every_mav_field_is_documented() -> None:
    rows = _row_names(_section(ARCHITECTURE, "### 2. MAV YAML (`$TRAILHOUSE_HOME/mavs/<name>.yaml`)"))
    fields = list(Mav.model_fields)
    assert sorted(set(fields) - set(rows)) == [], "MAV fields without a row"
    assert sorted(set(rows) - set(fields)) == [], "rows naming MAV fields that do not exist"


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found += _commands(sub, f"{prefix} {name}")
    return found


def test_every_cli_command_is_mentioned_in_operations() -> None:
    commands = _commands(build_parser(), "trailhouse")
    assert "trailhouse mav add" in commands and "trailhouse run" in commands
    text = OPERATIONS.read_text()
    missing = [c for c in commands if not re.search(re.escape(c) + r"(?![\w-])", text)]
    assert missing == []


def _slug(heading: str) -> str:
    # GitHub's anchors: lower case, punctuation other than '-' and '_' dropped, spaces to '-'.
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"^#{1,6} (.+)$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


DOC_FILES = sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("doc", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_relative_links_point_to_existing_files(doc: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", doc.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert broken == []


def test_the_three_documents_exist() -> None:
    assert {p.name for p in DOC_FILES} >= {"architecture.md", "schema.md", "operations.md"}


def test_operations_shows_the_iam_policy_file_as_it_is() -> None:
    import json

    blocks = re.findall(r"^```json\n(.*?)^```", OPERATIONS.read_text(), re.S | re.M)
    policy = json.loads((DOCS / "iam-policy.json").read_text())
    assert any(json.loads(b) == policy for b in blocks)


def builtin_rules_table() -> str:
    """The table of docs/rules.md's "The built-in rules", as the rules in sql/rules make it."""
    from trailhouse.alerting.rules import builtin_rules

    rows = ["| id | severity | ATT&CK | title |", "|---|---|---|---|"]
    for rule in sorted(builtin_rules(), key=lambda r: r.id):
        techniques = ", ".join(dict.fromkeys(ref.technique for ref in rule.attack)) or "-"
        rows.append(f"| `{rule.id}` | {rule.severity} | {techniques} | {rule.title.replace('|', '/')} |")
    return "\n".join(rows)


def test_the_rules_doc_lists_every_builtin_rule_as_it_is() -> None:
    table = "\n".join(line for line in _section(DOCS / "rules.md", "## The built-in rules").splitlines()
                      if line.startswith("|"))
    assert table == builtin_rules_table(), (
        "docs/rules.md's built-in table is stale; replace it with the output of\n"
        "  .venv/bin/python -c 'from tests.test_docs import builtin_rules_table as t; print(t())'")


def test_the_code_map_has_one_row_per_module() -> None:
    package = settings.PROJECT_ROOT / "include" / "trailhouse"
    modules = sorted(str(p.relative_to(package)) for p in [*package.rglob("*.py"), *package.rglob("*.c")]
                     if p.name != "__init__.py" and "migrations" not in p.parts)
    rows = _row_names(_section(ARCHITECTURE, "## Code map"))
    assert sorted(set(modules) - set(rows)) == [], "modules without a row in docs/architecture.md's code map"
    assert sorted(set(rows) - set(modules)) == [], "code map rows naming modules that do not exist"
    assert len(rows) == len(set(rows)), "a module with two rows"
