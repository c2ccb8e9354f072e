"""ATT&CK coverage of the rules: the tactic x technique matrix with the rules behind each cell.

A technique is *tested* when a rule mapped to it names a real log (`tests.corpus`) that
the suite replays and proves it fires on, *rule only* when rules map to it but none is
proven on a real log, and *none* when no rule maps to it. The same matrix feeds
`trailhouse rules coverage`, its ATT&CK Navigator layer and the web UI's coverage page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from trailhouse.alerting import attack
from trailhouse.alerting.rules import Rule

TESTED, RULE_ONLY, NONE = "tested", "rule only", "none"


@dataclass
class Cell:
    """One technique under one tactic, and the rules that detect it."""

    tactic: str
    technique: str
    rules: list[str] = field(default_factory=list)
    tested_by: list[str] = field(default_factory=list)  # rules proven on a real log

    @property
    def name(self) -> str:
        return attack.technique_name(self.technique)

    @property
    def status(self) -> str:
        return TESTED if self.tested_by else RULE_ONLY if self.rules else NONE


@dataclass
class Coverage:
    """Every tactic's cells in matrix order; techniques no rule maps to are included as `none`."""

    cells: list[Cell]

    def by_tactic(self) -> list[tuple[str, str, list[Cell]]]:
        """[(tactic shortname, tactic name, cells)] in the order of the Enterprise matrix."""
        out = []
        for _tid, short, name in attack.TACTICS:
            out.append((short, name, [c for c in self.cells if c.tactic == short]))
        return out

    def counts(self) -> dict[str, int]:
        """Distinct techniques by status (a technique under two tactics counts once, at its best)."""
        rank = [NONE, RULE_ONLY, TESTED]
        best: dict[str, str] = {}
        for c in self.cells:
            best[c.technique] = max(best.get(c.technique, NONE), c.status, key=rank.index)
        return {s: sum(v == s for v in best.values()) for s in (TESTED, RULE_ONLY, NONE)}


def coverage(rules: Iterable[Rule]) -> Coverage:
    """The matrix of `rules` (enabled or not: coverage is what the packs can detect)."""
    cells: dict[tuple[str, str], Cell] = {}
    for tid, (_name, tactics) in attack.TECHNIQUES.items():
        for tactic in tactics:
            cells[(tactic, tid)] = Cell(tactic, tid)
    for rule in rules:
        for ref in rule.attack:
            cell = cells[(ref.tactic, ref.technique)]
            cell.rules.append(rule.id)
            if rule.tests.corpus:
                cell.tested_by.append(rule.id)
    tactic_order = {short: i for i, (_t, short, _n) in enumerate(attack.TACTICS)}
    ordered = sorted(cells.values(), key=lambda c: (tactic_order[c.tactic], c.technique))
    return Coverage(ordered)


_COLORS = {TESTED: "#31a354", RULE_ONLY: "#a1d99b", NONE: "#ffffff"}
_SCORES = {TESTED: 2, RULE_ONLY: 1, NONE: 0}


def navigator_layer(cov: Coverage, *, name: str = "trailhouse rules") -> dict[str, Any]:
    """An ATT&CK Navigator layer (format 4.5): covered techniques scored and coloured, rules in the comment."""
    techniques = [
        {"techniqueID": c.technique, "tactic": c.tactic, "score": _SCORES[c.status], "color": _COLORS[c.status],
         "comment": f"{c.status}: {', '.join(c.rules)}", "enabled": True,
         "metadata": [{"name": "rule", "value": r} for r in c.rules]}
        for c in cov.cells if c.rules
    ]
    return {
        "name": name,
        "versions": {"attack": "16", "navigator": "5.1.0", "layer": "4.5"},
        "domain": "enterprise-attack",
        "description": "Techniques detected by trailhouse's rules: green = proven on a real log in the test "
                       "suite (tested), light green = rule only.",
        "filters": {"platforms": ["IaaS", "SaaS", "Identity Provider"]},
        "sorting": 0,
        "layout": {"layout": "side", "showID": True, "showName": True},
        "hideDisabled": False,
        "techniques": techniques,
        "gradient": {"colors": [_COLORS[NONE], _COLORS[TESTED]], "minValue": 0, "maxValue": 2},
        "legendItems": [{"label": "tested (a real log fires it)", "color": _COLORS[TESTED]},
                        {"label": "rule only", "color": _COLORS[RULE_ONLY]}],
        "showTacticRowBackground": False,
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
    }
