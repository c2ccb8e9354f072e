"""Sigma import: field mapping, every modifier on the real engine, refusals by reason, and the
project's own Sigma fixtures (tests/fixtures/sigma/) proven on their positive and negative events."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from sigma.collection import SigmaCollection
from sigma.rule import SigmaDetectionItem

from trailhouse.alerting import rules, sigma
from trailhouse.alerting.rules import Rule

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sigma"


# --- helpers -----------------------------------------------------------------------------


def sigma_text(detection: dict[str, Any], condition: Any = "sel", **extra: Any) -> str:
    doc = {"title": extra.pop("title", "Modifier case"), "id": extra.pop("id", str(uuid.uuid4())),
           "logsource": extra.pop("logsource", {"product": "aws", "service": "cloudtrail"}),
           "detection": {**detection, "condition": condition}, "level": extra.pop("level", "low"), **extra}
    return yaml.safe_dump(doc, sort_keys=False)


def convert_one(detection: dict[str, Any], condition: Any = "sel", **extra: Any) -> Rule:
    result = sigma.convert_yaml(sigma_text(detection, condition, **extra))
    assert not result.refused, result.refused
    assert len(result.rules) == 1
    return result.rules[0]


def refusal(detection: dict[str, Any] | None = None, condition: Any = "sel", *, text: str | None = None,
            **extra: Any) -> str:
    result = sigma.convert_yaml(text if text is not None else sigma_text(detection or {}, condition, **extra))
    assert not result.rules, [r.condition for r in result.rules]
    assert result.refused
    return result.refused[0][1]


def fires(rule: Rule, event: dict[str, Any] | None = None, delete: list[str] | None = None) -> bool:
    """Run the rule on one example event (BASE_RECORD overridden) through the real engine."""
    ex = rules.Example(name="case", event=event or {}, delete=delete or [])
    con = rules.connect(rules.records_table(rules.example_records(ex, f"sigma-test/{rule.id}")))
    try:
        ev = rules.evaluate(con, [rule])
    finally:
        con.close()
    assert not ev.errors, ev.errors
    return bool(ev.matches)


# --- the field mapping ---------------------------------------------------------------------


@pytest.mark.parametrize(("field", "sql"), [
    ("eventSource", "event_source"),
    ("eventName", "event_name_base"),
    ("eventType", "event_type"),
    ("readOnly", "read_only"),
    ("errorCode", "error_code"),
    ("errorMessage", "error_message"),
    ("sourceIPAddress", "source_ip_address"),
    ("userAgent", "user_agent"),
    ("awsRegion", "region"),
    ("recipientAccountId", "account_id"),
    ("userIdentity.type", "user_type"),
    ("userIdentity.arn", "principal_arn"),
    ("userIdentity.accessKeyId", "access_key_id"),
    ("userIdentity.invokedBy", "invoked_by"),
    ("userIdentity.sessionContext.sessionIssuer.userName", "session_issuer_user_name"),
    ("userIdentity.sessionContext.attributes.mfaAuthenticated", "session_mfa_authenticated"),
    ("tlsDetails.tlsVersion", "tls_version"),
    ("requestParameters", "request_parameters"),
    ("resources", "resources"),
    ("requestParameters.bucketName", "json_extract_string(request_parameters, '$.\"bucketName\"')"),
    ("responseElements.command.status",
     "json_extract_string(response_elements, '$.\"command\".\"status\"')"),
    ("additionalEventData.MFAUsed", "json_extract_string(additional_event_data, '$.\"MFAUsed\"')"),
    ("serviceEventDetails.snapshotId", "json_extract_string(service_event_details, '$.\"snapshotId\"')"),
    ("requestParameters.x-amz-acl", "json_extract_string(request_parameters, '$.\"x-amz-acl\"')"),
    ("requestParameters.items.0.name", "json_extract_string(request_parameters, '$.\"items\"[0].\"name\"')"),
    ("requestParameters.it's", "json_extract_string(request_parameters, '$.\"it''s\"')"),
    ('requestParameters.a"b', "json_extract_string(request_parameters, '$.\"a\\\"b\"')"),
    ("userIdentity.sessionContext.webIdFederationData.federatedProvider",
     "json_extract_string(extra_fields, '$.\"userIdentity\".\"sessionContext\".\"webIdFederationData\".\"federatedProvider\"')"),
    ("sessionCredentialFromConsole", "json_extract_string(extra_fields, '$.\"sessionCredentialFromConsole\"')"),
    ("vpcEndpointAccountId", "json_extract_string(extra_fields, '$.\"vpcEndpointAccountId\"')"),
])
def test_cloudtrail_fields_map_to_columns_and_json_lookups(field: str, sql: str) -> None:
    assert sigma.field_sql(field) == sql


@pytest.mark.parametrize("field", [None, "", "type", "EventName", "CommandLine", "eventTime", "userIdentity",
                                   "userIdentity.sessionContext", "userIdentity.sessionContext.attributes",
                                   "userIdentity.arn.x", "resources.ARN", "requestParameters..x", "tlsDetails"])
def test_fields_that_do_not_map(field: str | None) -> None:
    assert sigma.field_sql(field) is None


def test_every_column_path_is_mapped_except_timestamps() -> None:
    from trailhouse.warehouse.schema import COLUMNS, TIME

    for col in COLUMNS:
        if col.path is None:
            continue
        dotted = ".".join(col.path)
        if col.kind == TIME:
            assert sigma.field_sql(dotted) is None and "timestamp" in sigma.field_problem(dotted)
        elif dotted not in ("eventName", "recipientAccountId"):
            assert sigma.field_sql(dotted) == col.name


def test_the_pipeline_rewrites_detection_items() -> None:
    rule = SigmaCollection.from_yaml(sigma_text({
        "sel": {"eventSource": "iam.amazonaws.com", "userIdentity.arn|contains": "x",
                "requestParameters.policyArn|endswith": "/AdministratorAccess"}})).rules[0]
    sigma.cloudtrail_pipeline().apply(rule)
    items = rule.detection.detections["sel"].detection_items
    assert all(isinstance(i, SigmaDetectionItem) for i in items)
    assert [i.field for i in items] == ["event_source", "principal_arn",
                                        "json_extract_string(request_parameters, '$.\"policyArn\"')"]
    assert all(i.was_processed_by(sigma.MAPPING_ID) for i in items)


def test_the_pipeline_fails_a_rule_with_an_unknown_field() -> None:
    rule = SigmaCollection.from_yaml(sigma_text({"sel": {"eventSource": "x", "ParentImage": "y"}})).rules[0]
    with pytest.raises(Exception, match="unknown field 'ParentImage'"):
        sigma.cloudtrail_pipeline().apply(rule)


# --- every modifier, on the real engine ----------------------------------------------------

# (case, detection of `sel`, an event that must fire, an event that must not). Events are
# overrides of rules.BASE_RECORD: alice's DescribeInstances on ec2 from 198.51.100.7 with
# user agent "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64", readOnly true, us-east-1.
MODIFIER_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("equality ignores case", {"eventSource": "EC2.Amazonaws.com"}, {}, {"eventSource": "s3.amazonaws.com"}),
    ("* wildcard inside", {"userAgent": "aws-cli/2.*linux*"}, {}, {"userAgent": "aws-cli/1.2 Linux"}),
    ("? wildcard", {"awsRegion": "us-????-1"}, {}, {"awsRegion": "us-west-2"}),
    ("% and _ are literal", {"requestParameters.name": "100%_d*"},
     {"requestParameters": {"name": "100%_done"}}, {"requestParameters": {"name": "1000xdone"}}),
    ("escaped \\* is a literal star", {"requestParameters.name": "a\\*b"},
     {"requestParameters": {"name": "A*B"}}, {"requestParameters": {"name": "axxb"}}),
    ("contains", {"userAgent|contains": "PYTHON/3"}, {}, {"userAgent": "Boto3/1.34"}),
    ("startswith", {"userAgent|startswith": "AWS-CLI/"}, {}, {"userAgent": "Boto3/1.34 aws-cli/"}),
    ("endswith", {"userIdentity.arn|endswith": ":user/ALICE"}, {},
     {"userIdentity": {"arn": "arn:aws:iam::111122223333:user/alice2"}}),
    ("list is any-of", {"eventName": ["RunInstances", "DescribeInstances"]}, {}, {"eventName": "StopInstances"}),
    ("all", {"userAgent|contains|all": ["aws-cli", "linux"]}, {}, {"userAgent": "aws-cli/2.15.0 Windows/10"}),
    ("re is case-sensitive", {"userAgent|re": "^aws-cli/2\\.[0-9.]+ "}, {}, {"userAgent": "AWS-CLI/2.15 x"}),
    ("re|i", {"userAgent|re|i": "^AWS-CLI/2\\.[0-9]+ "}, {"userAgent": "Aws-Cli/2.15 x"}, {"userAgent": "aws-cli/1.2 x"}),
    ("re|s", {"requestParameters.script|re|s": "start.*end"},
     {"requestParameters": {"script": "start\nend"}}, {"requestParameters": {"script": "start\nEND"}}),
    ("re|contains", {"userAgent|re|contains": "python/3\\.1[01]"},
     {"userAgent": "Boto3 python/3.11.2"}, {"userAgent": "Boto3 python/3.9.2"}),
    ("cased", {"userIdentity.userName|cased": "alice"}, {}, {"userIdentity": {"userName": "Alice"}}),
    ("cased wildcard", {"userAgent|cased": "aws-cli/*"}, {}, {"userAgent": "AWS-CLI/2"}),
    ("cidr", {"sourceIPAddress|cidr": "198.51.100.0/22"}, {}, {"sourceIPAddress": "198.51.104.1"}),
    ("cidr ipv6", {"sourceIPAddress|cidr": "2001:db8:1::/48"}, {"sourceIPAddress": "2001:db8:1:0:0:0:0:5"},
     {"sourceIPAddress": "2001:db8:2::5"}),
    ("exists", {"requestParameters.instanceId|exists": True}, {"requestParameters": {"instanceId": "i-1"}}, {}),
    ("exists false", {"requestParameters.instanceId|exists": False}, {}, {"requestParameters": {"instanceId": "i-1"}}),
    ("null", {"errorCode": None}, {}, {"errorCode": "AccessDenied"}),
    ("null or empty", {"userAgent": [None, ""]}, {"userAgent": ""}, {}),
    ("empty string", {"userAgent": ""}, {"userAgent": ""}, {}),
    ("only a wildcard: any value", {"errorMessage": "*"}, {"errorMessage": "denied"}, {}),
    ("neq", {"awsRegion|neq": "US-EAST-1"}, {"awsRegion": "eu-west-1"}, {}),
    ("gt", {"requestParameters.maxCount|gt": 9}, {"requestParameters": {"maxCount": 10}},
     {"requestParameters": {"maxCount": 9}}),
    ("gte", {"requestParameters.maxCount|gte": 10}, {"requestParameters": {"maxCount": 10}},
     {"requestParameters": {"maxCount": 9}}),
    ("lt", {"requestParameters.maxCount|lt": 10}, {"requestParameters": {"maxCount": 9}},
     {"requestParameters": {"maxCount": "ten"}}),
    ("lte", {"requestParameters.ratio|lte": 0.5}, {"requestParameters": {"ratio": 0.5}},
     {"requestParameters": {"ratio": 0.75}}),
    ("fieldref", {"requestParameters.userName|fieldref": "userIdentity.userName"},
     {"requestParameters": {"userName": "ALICE"}}, {"requestParameters": {"userName": "bob"}}),
    ("fieldref|endswith", {"userIdentity.arn|fieldref|endswith": "userIdentity.userName"}, {},
     {"userIdentity": {"arn": "arn:aws:iam::111122223333:user/bob"}}),
    ("fieldref|contains", {"userIdentity.arn|fieldref|contains": "requestParameters.userName"},
     {"requestParameters": {"userName": "alice"}}, {"requestParameters": {"userName": "bob"}}),
    ("boolean column", {"readOnly": True}, {}, {"readOnly": False}),
    ("boolean column with a string", {"readOnly": "FALSE"}, {"readOnly": False}, {}),
    ("mfa flag with a string", {"userIdentity.sessionContext.attributes.mfaAuthenticated": "false"},
     {"userIdentity": {"sessionContext": {"attributes": {"mfaAuthenticated": "false"}}}}, {}),
    ("JSON boolean", {"requestParameters.dryRun": False}, {"requestParameters": {"dryRun": False}},
     {"requestParameters": {"dryRun": True}}),
    ("JSON number", {"requestParameters.fromPort": 22}, {"requestParameters": {"fromPort": 22}},
     {"requestParameters": {"fromPort": 2222}}),
    ("list of numbers", {"requestParameters.fromPort": [22, 3389]}, {"requestParameters": {"fromPort": 3389}},
     {"requestParameters": {"fromPort": 443}}),
    ("Lambda suffix stripped", {"eventName": "UpdateFunctionCode"}, {"eventName": "UpdateFunctionCode20150331v2"},
     {"eventName": "UpdateFunctionConfiguration20150331v2"}),
    ("suffixed value matches the suffixed name", {"eventName": "UpdateFunctionCode20150331v2"},
     {"eventName": "UpdateFunctionCode20150331v2"}, {"eventName": "UpdateFunctionCode20150331"}),
    ("suffixed and plain in one list", {"eventName": ["GetFunction20150331v2", "UpdateFunctionCode"]},
     {"eventName": "UpdateFunctionCode20150331v2"}, {"eventName": "GetFunction20150331"}),
    ("eventName regex on the base name", {"eventName|re": "Code$"}, {"eventName": "UpdateFunctionCode20150331v2"},
     {"eventName": "CodeUpdate"}),
    ("dashed JSON key", {"requestParameters.x-amz-acl": "public-read"},
     {"requestParameters": {"x-amz-acl": "public-read"}}, {"requestParameters": {"x-amz-acl": "private"}}),
    ("array index", {"requestParameters.items.1.name": "b"},
     {"requestParameters": {"items": [{"name": "a"}, {"name": "b"}]}},
     {"requestParameters": {"items": [{"name": "b"}, {"name": "a"}]}}),
    ("quote in a value", {"requestParameters.name": "it's"}, {"requestParameters": {"name": "It's"}},
     {"requestParameters": {"name": "its"}}),
    ("; in a value", {"userAgent|contains": "linux; x64"}, {"userAgent": "Mozilla/5.0 (Linux; x64)"},
     {"userAgent": "Mozilla/5.0 (Linux x64)"}),
    ("-- in a value", {"userAgent": "tool --dry-run"}, {"userAgent": "Tool --dry-run"}, {"userAgent": "tool -dry-run"}),
    ("/* in a wildcard value", {"userAgent|cased": "a/\\**"}, {"userAgent": "a/*b"}, {"userAgent": "a/b"}),
    ("; -- and ? with LIKE", {"userAgent": "a;b--c?"}, {"userAgent": "A;B--CD"}, {"userAgent": "a;b--c"}),
    ("; in a regex", {"userAgent|re": "Linux; x(64|86)"}, {"userAgent": "Linux; x64"}, {"userAgent": "Linux x64"}),
    ("/* in a regex", {"userAgent|re": "^a/*b$"}, {"userAgent": "a//b"}, {"userAgent": "a/*b"}),
    ("extra_fields path", {"userIdentity.sessionContext.webIdFederationData.federatedProvider": "accounts.google.com"},
     {"userIdentity": {"sessionContext": {"webIdFederationData": {"federatedProvider": "accounts.google.com"}}}}, {}),
    ("top-level field without a column", {"sessionCredentialFromConsole": "true"},
     {"sessionCredentialFromConsole": "true"}, {}),
    ("whole blob", {"requestParameters|contains": '"0.0.0.0/0"'},
     {"requestParameters": {"cidrIp": "0.0.0.0/0"}}, {"requestParameters": {"cidrIp": "10.0.0.0/8"}}),
]


@pytest.mark.parametrize(("detection", "positive", "negative"), [c[1:] for c in MODIFIER_CASES],
                         ids=[c[0] for c in MODIFIER_CASES])
def test_modifier_on_the_engine(detection: dict[str, Any], positive: dict[str, Any], negative: dict[str, Any]) -> None:
    rule = convert_one({"sel": detection})
    assert rules.validate_condition(rule.condition)
    assert fires(rule, positive), rule.condition
    assert not fires(rule, negative), rule.condition


def test_not_filter_holds_for_an_event_that_lacks_the_field() -> None:
    rule = convert_one({"sel": {"eventSource": "ec2.amazonaws.com"}, "filter": {"userAgent|contains": "terraform"}},
                       "sel and not filter")
    assert fires(rule, {}, delete=["userAgent"])
    assert fires(rule, {})
    assert not fires(rule, {"userAgent": "Terraform/1.9"})


def test_condition_shapes() -> None:
    sel = {"sel_a": {"eventName": "RunInstances"}, "sel_b": {"awsRegion": "eu-west-1"},
           "filter_x": {"userAgent|contains": "terraform"}, "filter_y": {"userIdentity.type": "AWSService"}}
    one_of = convert_one(sel, "1 of sel_* and not 1 of filter_*")
    assert fires(one_of, {"awsRegion": "eu-west-1"}) and not fires(one_of, {})
    assert not fires(one_of, {"awsRegion": "eu-west-1", "userIdentity": {"type": "AWSService"}})
    all_of = convert_one(sel, "all of sel_*")
    assert fires(all_of, {"eventName": "RunInstances", "awsRegion": "eu-west-1"})
    assert not fires(all_of, {"eventName": "RunInstances"})
    them = convert_one({"sel_a": {"eventName": "RunInstances"}, "sel_b": {"eventName": "StopInstances"}}, "1 of them")
    assert fires(them, {"eventName": "StopInstances"}) and not fires(them, {})
    nested = convert_one(sel, "(sel_a or sel_b) and not (filter_x or filter_y)")
    assert fires(nested, {"eventName": "RunInstances"})
    assert not fires(nested, {"eventName": "RunInstances", "userAgent": "terraform"})
    several = convert_one(sel, ["sel_a", "sel_b"])
    assert fires(several, {"eventName": "RunInstances"}) and fires(several, {"awsRegion": "eu-west-1"})
    assert not fires(several, {})


def test_conditions_are_laid_out_one_operand_a_line() -> None:
    rule = convert_one({"sel": {"eventSource": "iam.amazonaws.com", "eventName": ["A", "B"],
                                "requestParameters.note": "x AND y OR z"}})
    lines = rule.condition.splitlines()
    assert len(lines) == 3 and lines[1].startswith("AND ") and lines[2].startswith("AND ")
    assert "'x and y or z'" in lines[2]  # the literal is untouched
    assert rule.condition.endswith("\n")


def test_hostile_values_and_fields_stay_inside_the_sandbox() -> None:
    rule = convert_one({"sel": {"userAgent": "x'); COPY events TO '/tmp/x' --"}})
    assert rules.validate_condition(rule.condition)
    assert fires(rule, {"userAgent": "X'); copy events to '/tmp/x' --"})
    assert not fires(rule, {})
    assert "unknown field" in refusal({"sel": {"eventName') OR TRUE OR ('": "x"}})
    assert "unknown field" in refusal({"sel": {"read_csv('/etc/passwd')": "x"}})


# --- refusals, each with its reason -------------------------------------------------------

REFUSALS: list[tuple[str, dict[str, Any], Any, str]] = [
    ("base64", {"sel": {"requestParameters.userData|base64": "curl"}}, "sel", "modifier |base64 on field"),
    ("base64offset", {"sel": {"requestParameters.userData|base64offset|contains": "curl"}}, "sel",
     "modifier |base64offset"),
    ("wide", {"sel": {"userAgent|wide": "x"}}, "sel", "modifier |wide"),
    ("utf16", {"sel": {"userAgent|utf16|base64": "x"}}, "sel", "modifier |utf16"),
    ("windash", {"sel": {"userAgent|windash|contains": "-x"}}, "sel", "modifier |windash"),
    ("expand", {"sel": {"userAgent|expand": "%agent%"}}, "sel", "modifier |expand"),
    ("timestamp part", {"sel": {"eventSource|hour": 3}}, "sel", "modifier |hour"),
    ("unknown field", {"sel": {"eventSource": "x"}, "filter": {"type": "AssumedRole"}}, "sel and not filter",
     "unknown field 'type'"),
    ("unknown referenced field", {"sel": {"userIdentity.arn|fieldref": "TargetUser"}}, "sel",
     "unknown referenced field 'TargetUser'"),
    ("keyword search", {"keywords": ["pacu"]}, "keywords", "keyword search"),
    ("timestamp field", {"sel": {"eventTime|startswith": "2026-"}}, "sel", "'eventTime' is a timestamp"),
    ("object field", {"sel": {"userIdentity.sessionContext": "x"}}, "sel", "is an object"),
    ("resources list", {"sel": {"resources.ARN|contains": "bucket"}}, "sel", "'resources.*' is a list"),
    ("regex RE2 cannot run", {"sel": {"userAgent|re": "(?<=aws)-cli"}}, "sel", "invalid"),
    ("regex with -- in a class", {"sel": {"userAgent|re": "[+--]x"}}, "sel", "'--' inside a character class"),
    ("regex outside the safe subset", {"sel": {"userAgent|re": "((((a*)*)*)*){1000}b"}}, "sel", "nested quantifier"),
    ("regex repeated too often", {"sel": {"userAgent|re": "(x|y){1000}"}}, "sel", "repetition count {1000} is above 100"),
    ("aggregation", {"sel": {"eventName": "GetSecretValue"}}, "sel | count() by userIdentity.arn > 20",
     "an aggregation (| count() ...)"),
    ("near", {"sel": {"eventName": "A"}, "other": {"eventName": "B"}}, "sel | near other", "the near operator"),
    ("too long", {"sel": {"userAgent|contains": [f"tool-{i:04d}-x" for i in range(200)]}}, "sel",
     "longer than 4000 characters"),
]


@pytest.mark.parametrize(("detection", "condition", "reason"), [c[1:] for c in REFUSALS],
                         ids=[c[0] for c in REFUSALS])
def test_refused_with_its_reason(detection: dict[str, Any], condition: Any, reason: str) -> None:
    got = refusal(detection, condition)
    assert reason in got
    assert "\n" not in got


@pytest.mark.parametrize(("logsource", "reason"), [
    ({"product": "windows", "category": "process_creation"}, "logsource product=windows, category=process_creation"),
    ({"product": "aws", "service": "guardduty"}, "logsource product=aws, service=guardduty"),
    ({"product": "gcp", "service": "gcp.audit"}, "logsource product=gcp"),
    ({"product": "aws", "service": "cloudtrail", "category": "network"}, "category=network"),
    ({"category": "process_creation"}, "is not product=aws, service=cloudtrail"),
])
def test_other_logsources_are_refused(logsource: dict[str, str], reason: str) -> None:
    assert reason in refusal({"sel": {"eventName": "x"}}, logsource=logsource)


def test_correlation_rules_are_refused_with_the_rules_they_feed() -> None:
    text = sigma_text({"sel": {"eventName": "GetSecretValue"}}, name="reads") + "---\n" + yaml.safe_dump({
        "title": "Many reads", "id": str(uuid.uuid4()),
        "correlation": {"type": "value_count", "rules": ["reads"], "group-by": ["userIdentity.arn"],
                        "timespan": "1h", "condition": {"field": "requestParameters.secretId", "gte": 20}},
        "level": "high"})
    result = sigma.convert_yaml(text, "x.yml")
    assert not result.rules
    reasons = dict(result.refused)
    assert "correlation rule (value-count) is not supported" in reasons["x.yml: Many reads"]
    assert "only feeds a correlation rule" in reasons["x.yml: Modifier case"]


def test_unreadable_documents_are_refused_not_raised(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("title: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "empty.yml").write_text("")
    (tmp_path / "nodetection.yml").write_text("title: x\nlogsource: {product: aws, service: cloudtrail}\n")
    (tmp_path / "binary.yml").write_bytes(b"\xff\xfe\x00title")
    result = sigma.convert_paths([tmp_path, tmp_path / "missing.yml"])
    reasons = {Path(where.split(": ")[0]).name: why for where, why in result.refused}
    assert reasons["bad.yml"].startswith("not valid YAML")
    assert reasons["list.yaml"].startswith("not a Sigma rule")
    assert reasons["empty.yml"].startswith("not a Sigma rule")
    assert "detection" in reasons["nodetection.yml"].lower()
    assert reasons["binary.yml"].startswith("cannot read the file")
    assert reasons["missing.yml"] == "no such file or directory"
    assert not result.rules


@pytest.mark.parametrize(("block", "reason"), [
    ({"tests": {"positive": [{"name": "x", "evnt": {}}]}}, "trailhouse.tests.positive.0.evnt: Extra inputs"),
    ({"severity": "high"}, "unknown keys ['severity']"),
    ("yes", "must be a mapping"),
])
def test_a_bad_trailhouse_block_is_refused(block: Any, reason: str) -> None:
    assert reason in refusal({"sel": {"eventName": "x"}}, trailhouse=block)


# --- rule metadata ---------------------------------------------------------------------------


def test_rule_metadata() -> None:
    sid = str(uuid.uuid4())
    rule = convert_one({"sel": {"eventName": "CreateUser"}}, title="New IAM user (via Sigma)!", id=sid,
                       level="informational", description="Someone made a user.", status="test",
                       author="someone", references=["https://example.com/a"],
                       falsepositives=["Onboarding", "Automation"],
                       tags=["attack.persistence", "attack.t1136.003", "attack.t1078.004", "attack.t9999",
                             "attack.g0016", "cve.2021-0001", "attack.defense_evasion"],
                       trailhouse={"runbook": "Ask who created the user.",
                                   "tests": {"positive": [{"name": "p", "event": {"eventName": "CreateUser"}}]}})
    assert rule.id == "sigma.new-iam-user-via-sigma"
    assert rule.title == "New IAM user (via Sigma)!"
    assert rule.severity == "info"
    assert not rule.builtin and rule.enabled
    assert rule.references == ["https://example.com/a"]
    assert rule.description.startswith("Someone made a user.\n\nImported from Sigma rule " + sid)
    assert "status test" in rule.description and "by someone" in rule.description
    assert "False positives:\n- Onboarding\n- Automation" in rule.description
    assert [(a.tactic, a.technique) for a in rule.attack] == [
        ("persistence", "T1136.003"), ("persistence", "T1078.004"), ("defense-evasion", "T1078.004")]
    assert rule.tags == ["sigma", "attack.t9999", "attack.g0016", "cve.2021-0001"]
    assert rule.runbook == "Ask who created the user."
    assert [e.name for e in rule.tests.positive] == ["p"]
    assert rules.test_rule(rule)[0].ok


@pytest.mark.parametrize(("level", "severity"), [("informational", "info"), ("low", "low"), ("medium", "medium"),
                                                 ("high", "high"), ("critical", "critical"), (None, "medium")])
def test_levels_become_severities(level: str | None, severity: str) -> None:
    assert convert_one({"sel": {"eventName": "x"}}, level=level).severity == severity


@pytest.mark.parametrize(("status", "enabled"), [("stable", True), ("experimental", True),
                                                 ("deprecated", False), ("unsupported", False)])
def test_deprecated_rules_arrive_disabled(status: str, enabled: bool) -> None:
    assert convert_one({"sel": {"eventName": "x"}}, status=status).enabled is enabled


def test_attack_tags() -> None:
    pairs, plain = sigma.attack_refs(["attack.initial-access", "attack.t1190", "attack.t1098",
                                      "attack.privilege_escalation", "attack.execution", "attack.t1059.001"])
    assert pairs == [{"tactic": "initial-access", "technique": "T1190"},
                     {"tactic": "privilege-escalation", "technique": "T1098"}]
    # T1059.001 (PowerShell) is not in the cloud catalogue; execution paired with nothing.
    assert plain == ["attack.execution", "attack.t1059.001"]
    # A technique whose tactics none of the tags name, with several tactics: kept as a tag.
    assert sigma.attack_refs(["attack.t1098"]) == ([], ["attack.t1098"])
    # ... with exactly one tactic: that one.
    assert sigma.attack_refs(["attack.t1580"]) == ([{"tactic": "discovery", "technique": "T1580"}], [])


def test_ids_are_unique_within_an_import(tmp_path: Path) -> None:
    for n in range(3):
        (tmp_path / f"r{n}.yml").write_text(sigma_text({"sel": {"eventName": "x"}}, title="Same title",
                                                       id=f"{n}aaaaaaa-0000-4000-8000-000000000000"))
    (tmp_path / "r3.yaml").write_text(sigma_text({"sel": {"eventName": "x"}}, title="?!"))
    result = sigma.convert_paths([tmp_path])
    ids = [r.id for r in result.rules]
    assert ids[:3] == ["sigma.same-title", "sigma.same-title-1aaaaaaa", "sigma.same-title-2aaaaaaa"]
    assert ids[3].startswith("sigma.") and len(ids[3]) > len("sigma.") + 3  # from the Sigma id
    assert all(rules.ID_RE.match(i) for i in ids)
    long = convert_one({"sel": {"eventName": "x"}}, title="word " * 50)
    assert rules.ID_RE.match(long.id)


def test_rule_yaml_round_trips_through_the_rule_file_loader(tmp_path: Path) -> None:
    result = sigma.convert_paths([FIXTURES])
    assert result.rules
    for rule in result.rules:
        path = tmp_path / f"{rule.id}.yaml"
        path.write_text(sigma.rule_yaml(rule))
        loaded = rules.load_rule_file(path)
        assert loaded.model_copy(update={"builtin": False}) == rule, rule.id
    text = sigma.rule_yaml(result.rules[0])
    assert text.startswith(f"id: {result.rules[0].id}\ntitle: ")
    assert "condition: |\n" in text and "builtin" not in text and "owner" not in text


def test_rule_yaml_keeps_the_shape_of_sql_rules() -> None:
    builtin = rules.load_rule_file(rules.RULES_DIR / "trailhouse.lambda-code-updated.yaml")
    data = yaml.safe_load(sigma.rule_yaml(builtin))
    assert list(data) == [k for k in ("id", "title", "description", "severity", "references", "tags", "attack",
                                      "runbook", "condition", "threshold", "dedup", "exclusions", "enabled", "tests")
                          if k in data]
    assert Rule.model_validate({**data, "builtin": True}) == builtin


# --- the fixture set: the project's own rules in the Sigma format --------------------------

EXPECTED_REFUSALS = {
    "correlation_event_count.yml: Access denied on secrets": "only feeds a correlation rule",
    "correlation_event_count.yml: Many secret reads refused for one principal": "correlation rule (event-count)",
    "aggregation_count.yml": "an aggregation (| count() ...)",
    "near_condition.yml": "the near operator",
    "unknown_field.yml": "unknown field 'type'",
    "windows_logsource.yml": "logsource product=windows, category=process_creation",
    "other_aws_service.yml": "logsource product=aws, service=guardduty",
    "base64_modifier.yml": "modifier |base64offset",
    "keyword_search.yml": "keyword search",
    "timestamp_field.yml": "'eventTime' is a timestamp",
}


@pytest.fixture(scope="module")
def fixture_import() -> sigma.SigmaImport:
    return sigma.convert_paths([FIXTURES])


def test_fixture_counts(fixture_import: sigma.SigmaImport) -> None:
    files = sorted(p for p in FIXTURES.glob("*.yml"))
    assert len(files) >= 30
    assert len(fixture_import.rules) == len(files)
    assert len(fixture_import.refused) == len(EXPECTED_REFUSALS)


def test_fixture_files_are_our_own_format(fixture_import: sigma.SigmaImport) -> None:
    ids = []
    for path in sorted(FIXTURES.rglob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert str(uuid.UUID(doc["id"], version=4)) == doc["id"], path
            assert doc.get("author") == "trailhouse project", path
            ids.append(doc["id"])
    assert len(ids) == len(set(ids))
    assert "the trailhouse project's own" in (FIXTURES / "README.md").read_text()


def test_fixture_rules_are_refused_for_their_reason(fixture_import: sigma.SigmaImport) -> None:
    got = {}
    for where, why in fixture_import.refused:
        path, _, title = where.partition(": ")
        assert Path(path).parent.name == "refused", where
        key = f"{Path(path).name}: {title}" if f"{Path(path).name}: {title}" in EXPECTED_REFUSALS else Path(path).name
        got[key] = why
    assert set(got) == set(EXPECTED_REFUSALS)
    for key, reason in EXPECTED_REFUSALS.items():
        assert reason in got[key], (key, got[key])


def test_fixture_conditions_pass_the_custom_rule_check(fixture_import: sigma.SigmaImport) -> None:
    for rule in fixture_import.rules:
        assert rules.validate_condition(rule.condition) == rule.condition.strip()
        assert not re.search(r"--|/\*|;", rule.condition)


def test_fixture_rules_fire_on_their_positives_only(fixture_import: sigma.SigmaImport) -> None:
    failures = []
    for rule in fixture_import.rules:
        assert rule.tests.positive and rule.tests.negative, rule.id
        failures += [f"{r.rule_id}: {r.example!r} expected {'fire' if r.expected else 'quiet'} {r.error}"
                     for r in rules.test_rule(rule) if not r.ok]
    assert not failures, "\n".join(failures)


def test_fixture_rules_cover_the_shapes(fixture_import: sigma.SigmaImport) -> None:
    conditions = "\n".join(r.condition for r in fixture_import.rules)
    for needle in ("json_extract_string(request_parameters", "json_extract_string(response_elements",
                   "json_extract_string(additional_event_data", "json_extract_string(extra_fields", "IS NULL",
                   "IS NOT NULL", "regexp_matches(", "LIKE", " IN (", "starts_with(", "ends_with(", "contains(",
                   "NOT ", "TRY_CAST(", "event_name_base", "lower(event_name)", "session_mfa_authenticated",
                   "read_only = FALSE", "[0]"):
        assert needle in conditions, needle
    assert sum(bool(r.attack) for r in fixture_import.rules) >= 30


def test_the_docs_list_every_mapped_field_and_modifier() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "rules.md").read_text()
    section = doc[doc.index("## Sigma import"):]
    missing = [f for f in sigma.FIELD_COLUMNS if f"`{f}`" not in section]
    assert missing == [], f"add to the field mapping of docs/rules.md: {missing}"
    undocumented = [m for m in sigma.SUPPORTED_MODIFIERS if m not in ("i", "ignorecase", "m", "multiline", "s",
                                                                      "dotall") and f"`{m}`" not in section]
    assert undocumented == []
    assert "trailhouse rules import-sigma PATH..." in section and "--out DIR" in section
