"""Custom conditions use regular expressions from a documented safe subset only (docs/rules.md,
"Regular expressions"): refused by name otherwise, wherever a condition is checked."""

from __future__ import annotations

import re

import pytest

from trailhouse.alerting import regex, rules

ISSUE = "regexp_matches(coalesce(user_agent,''), '((((a*)*)*)*){1000}b')"


@pytest.mark.parametrize(("condition", "needle"), [
    (ISSUE, "nested quantifier"),
    ("regexp_matches(user_agent, '(a*)*')", "nested quantifier"),
    ("regexp_matches(user_agent, '(?:x|y*)+z')", "nested quantifier"),
    ("user_agent SIMILAR TO '(a?)+'", "nested quantifier"),
    ("regexp_full_match(user_agent, '(a*b*)*')", "nested quantifier"),
    ("user_agent ~ '(x|y){1000}'", "repetition count {1000} is above 100"),
    ("regexp_matches(user_agent, 'a{101}')", "above 100"),
    ("regexp_matches(user_agent, '((a?){5}){90}b')", "above 200"),
    ("regexp_matches(user_agent, '(a?){100}(a?){100}(a?){100}b')", "above 200"),
    ("regexp_matches(user_agent, '(aws)-\\1')", "backreferences"),
    ("regexp_matches(user_agent, '(?P<t>aws)(?P=t)')", "backreferences"),
    ("regexp_matches(user_agent, 'aws(?=-cli)')", "look-ahead"),
    ("regexp_matches(user_agent, '(?<!boto)core')", "look-ahead and look-behind"),
    ("regexp_matches(user_agent, '(?>aws)')", "atomic"),
    ("regexp_matches(user_agent, 'a++')", "possessive"),
    ("regexp_matches(user_agent, 'a**')", "repeats a repetition"),
    ("regexp_matches(user_agent, '(unclosed')", "not closed"),
    ("regexp_matches(user_agent, '[z-a]')", "RE2 refuses it"),
    ("regexp_matches(user_agent, event_name)", "must be a string literal"),
    ("regexp_matches(user_agent, 'aws' || user_agent)", "must be a string literal"),
    ("regexp_matches(user_agent, 'aws', event_name)", "must be a string literal"),
    ("regexp_matches(user_agent, 'aws', 'g')", "option(s) 'g'"),
    ("regexp_matches(user_agent, '" + "a" * 1001 + "')", "longer than 1000"),
])
def test_a_regular_expression_outside_the_subset_is_refused_by_name(condition: str, needle: str) -> None:
    with pytest.raises(rules.UnsafeCondition, match=re.escape(needle)):
        rules.validate_condition(condition)


@pytest.mark.parametrize("pattern", [
    r"^aws-cli/2\.",
    r"(?i)distrib#(kali|parrot|pentoo)",
    r":assumed-role/[^/]+/i-[0-9a-f]{8,17}$",
    r"^(\d{1,3}\.){3}\d{1,3}$",
    r"\{(?:[^{}]|\{[^{}]*\})*\"Effect\"",  # one level of braces: the inner repetition needs a brace first
    r"(a+)+b",  # nested, but each repetition consumes a character: linear in RE2, as measured
    r"((a?){5}){40}b",  # writes out 199 more items: within the limit
    r"\Q(a*)*\E",  # literal text
    r"[*+?{}]+",
    r"(?s)^.*foo.*$",
])
def test_regular_expressions_in_the_subset_are_accepted(pattern: str) -> None:
    regex.check(pattern)
    condition = f"regexp_matches(coalesce(user_agent, ''), '{pattern}')"
    assert rules.validate_condition(condition) == condition

