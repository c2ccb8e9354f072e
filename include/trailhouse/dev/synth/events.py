"""CloudTrail records: one call assembled in CloudTrail's key order, and the weighted event
templates (reads, sign-ins, service events, security-relevant writes) a delivery file draws from."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

from trailhouse.dev.synth.world import (
    _K_ROLE,
    _K_ROOT,
    _K_SSO,
    _K_SVC,
    _K_USER,
    _TLS,
    _UA_BROWSER,
    _UPPER_NUM,
    _expiration,
    _Gen,
    _hexs,
    _iso,
    _service_ident,
    _token,
    _uuid,
)

_WINDOW = 900  # events reach a file within ~15 minutes of happening
_ERROR_RATE = 0.03


# --------------------------------------------------------------------------- record assembly


def _error(service: str, action: str, arn: str) -> tuple[str, str]:
    if service == "ec2":
        return (
            "Client.UnauthorizedOperation",
            f"You are not authorized to perform this operation. User: {arn} is not authorized to "
            f"perform: ec2:{action} because no identity-based policy allows the ec2:{action} action",
        )
    if service == "s3":
        return "AccessDenied", "Access Denied"
    return (
        "AccessDenied",
        f"User: {arn} is not authorized to perform: {service}:{action} because no "
        f"identity-based policy allows the {service}:{action} action",
    )


def _call(
    g: _Gen,
    actor: tuple[dict[str, Any], int, str, str],
    t: int,
    service: str,
    name: str,
    req: Any,
    resp: Any,
    read_only: bool,
    *,
    resources: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    version: str = "1.08",
    api_name: str | None = None,
    err: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One AwsApiCall record, keys in CloudTrail's order."""
    ident, kind, ip, ua = actor
    rng = g.rng
    if err is None and kind != _K_SVC and rng.random() < _ERROR_RATE:
        err = _error(service, api_name or name, ident.get("arn", ""))
    rec: dict[str, Any] = {
        "eventVersion": version,
        "userIdentity": ident,
        "eventTime": _iso(t),
        "eventSource": f"{service}.amazonaws.com",
        "eventName": name,
        "awsRegion": g.region,
        "sourceIPAddress": ip,
        "userAgent": ua,
    }
    if err is not None:
        rec["errorCode"] = err[0]
        rec["errorMessage"] = err[1]
        resp = None
    rec["requestParameters"] = req
    rec["responseElements"] = resp
    if extra:
        rec["additionalEventData"] = extra
    rec["requestID"] = _uuid(rng)
    rec["eventID"] = _uuid(rng)
    rec["readOnly"] = read_only
    if resources is not None:
        rec["resources"] = resources
    rec["eventType"] = "AwsApiCall"
    rec["managementEvent"] = True
    rec["recipientAccountId"] = g.acct.id
    if kind == _K_SVC:
        # Calls services make on a principal's behalf carry the id both accounts see.
        rec["sharedEventID"] = _uuid(rng)
    rec["eventCategory"] = "Management"
    if kind != _K_SVC and ip != "AWS Internal":
        v, c = rng.choice(_TLS)
        rec["tlsDetails"] = {
            "tlsVersion": v,
            "cipherSuite": c,
            "clientProvidedHostHeader": g.host(service),
        }
        if ua is _UA_BROWSER and kind in (_K_SSO, _K_ROOT):
            rec["sessionCredentialFromConsole"] = "true"
    return rec


def _svc(g: _Gen, svc: str) -> tuple[dict[str, Any], int, str, str]:
    if g.rng.random() < 0.2:
        return _service_ident(svc), _K_SVC, "AWS Internal", "AWS Internal"
    return _service_ident(svc), _K_SVC, svc, svc


# --------------------------------------------------------------------------- event templates
# Each template: (g, t) -> record. Weights are relative; reads dominate like real trails.

Template = Callable[[_Gen, int], dict[str, Any]]


def _ev_describe_instances(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    a = g.acct
    if rng.random() < 0.5:
        req: Any = {"instancesSet": {"items": [{"instanceId": rng.choice(a.instances)}]}, "filterSet": {}}
    else:
        req = {"instancesSet": {}, "filterSet": {}, "maxResults": 1000}
    return _call(g, g.any(t, "ec2.describe-instances"), t, "ec2", "DescribeInstances", req, None, True)


def _simple_read(
    service: str, name: str, req: Callable[[_Gen], Any], who: str = "any", version: str = "1.08"
) -> Template:
    cmd = f"{service}.{name.lower()}"

    def build(g: _Gen, t: int) -> dict[str, Any]:
        actor = g.machine(t, cmd) if who == "machine" else g.human(t, cmd) if who == "human" else g.any(t, cmd)
        return _call(g, actor, t, service, name, req(g), None, True, version=version)

    return build


def _svc_read(service: str, name: str, invoker: str, req: Callable[[_Gen], Any]) -> Template:
    def build(g: _Gen, t: int) -> dict[str, Any]:
        return _call(g, _svc(g, invoker), t, service, name, req(g), None, True)

    return build


def _none(g: _Gen) -> None:
    return None


def _ev_get_caller_identity(g: _Gen, t: int) -> dict[str, Any]:
    return _call(
        g, g.any(t, "sts.get-caller-identity"), t, "sts", "GetCallerIdentity", None, None, True, version="1.09"
    )


def _ev_assume_role(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    a = g.acct
    ridx = rng.randrange(len(a.roles))
    name, rid, arn, sessions = a.roles[ridx]
    session = rng.choice(sessions)
    if rng.random() < 0.4:
        actor = _svc(g, rng.choice(("ec2.amazonaws.com", "lambda.amazonaws.com", "ecs-tasks.amazonaws.com")))
    else:
        actor = g.any(t, "sts.assume-role")
    req = {"roleArn": arn, "roleSessionName": session, "durationSeconds": 3600}
    resp = {
        "credentials": {
            "accessKeyId": "ASIA" + _token(rng, 16, _UPPER_NUM),
            "sessionToken": _token(rng, 64),
            "expiration": _expiration(t + 3600),
        },
        "assumedRoleUser": {
            "assumedRoleId": f"{rid}:{session}",
            "arn": f"arn:aws:sts::{a.id}:assumed-role/{name}/{session}",
        },
    }
    res = [{"accountId": a.id, "type": "AWS::IAM::Role", "ARN": arn}]
    return _call(g, actor, t, "sts", "AssumeRole", req, resp, True, resources=res, version="1.08")


def _ev_assume_role_web_identity(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    a = g.acct
    name, rid, arn, _ = a.roles[1]
    ident = {
        "type": "WebIdentityUser",
        "principalId": f"arn:aws:iam::{a.id}:oidc-provider/token.actions.githubusercontent.com:sts.amazonaws.com:repo:acme/infra:ref:refs/heads/main",
        "userName": "repo:acme/infra:ref:refs/heads/main",
        "identityProvider": f"arn:aws:iam::{a.id}:oidc-provider/token.actions.githubusercontent.com",
    }
    req = {"roleArn": arn, "roleSessionName": "GitHubActions", "durationSeconds": 3600}
    resp = {
        "credentials": {
            "accessKeyId": "ASIA" + _token(rng, 16, _UPPER_NUM),
            "sessionToken": _token(rng, 64),
            "expiration": _expiration(t + 3600),
        },
        "subjectFromWebIdentityToken": "repo:acme/infra:ref:refs/heads/main",
        "assumedRoleUser": {
            "assumedRoleId": f"{rid}:GitHubActions",
            "arn": f"arn:aws:sts::{a.id}:assumed-role/{name}/GitHubActions",
        },
        "provider": f"arn:aws:iam::{a.id}:oidc-provider/token.actions.githubusercontent.com",
        "audience": "sts.amazonaws.com",
    }
    res = [{"accountId": a.id, "type": "AWS::IAM::Role", "ARN": arn}]
    return _call(
        g,
        (ident, _K_USER, g.ip(), "aws-sdk-nodejs/2.1558.0 linux/v20.11.1 configure-aws-credentials-for-github-actions"),
        t,
        "sts",
        "AssumeRoleWithWebIdentity",
        req,
        resp,
        True,
        resources=res,
    )


def _ev_get_bucket_acl(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    b = rng.choice(g.acct.buckets)
    req = {"bucketName": b, "Host": f"{b}.s3.amazonaws.com", "acl": ""}
    extra = {
        "SignatureVersion": "SigV4",
        "CipherSuite": "TLS_AES_128_GCM_SHA256",
        "bytesTransferredIn": 0,
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": _token(rng, 76),
        "bytesTransferredOut": 550,
    }
    res = [{"accountId": g.acct.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]
    actor = (
        _svc(g, rng.choice(("cloudtrail.amazonaws.com", "config.amazonaws.com")))
        if rng.random() < 0.6
        else g.any(t, "s3api.get-bucket-acl")
    )
    return _call(g, actor, t, "s3", "GetBucketAcl", req, None, True, resources=res, extra=extra)


def _s3_bucket_read(name: str, sub: str) -> Template:
    def build(g: _Gen, t: int) -> dict[str, Any]:
        b = g.rng.choice(g.acct.buckets)
        req = {"bucketName": b, "Host": f"{b}.s3.{g.region}.amazonaws.com", sub: ""}
        res = [{"accountId": g.acct.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]
        extra = {
            "SignatureVersion": "SigV4",
            "bytesTransferredIn": 0,
            "AuthenticationMethod": "AuthHeader",
            "bytesTransferredOut": 0,
        }
        return _call(g, g.any(t, f"s3api.{name.lower()}"), t, "s3", name, req, None, True, resources=res, extra=extra)

    return build


def _ev_list_buckets(g: _Gen, t: int) -> dict[str, Any]:
    req = {"Host": "s3.amazonaws.com"}
    return _call(
        g,
        g.any(t, "s3.ls"),
        t,
        "s3",
        "ListBuckets",
        req,
        None,
        True,
        extra={"SignatureVersion": "SigV4", "bytesTransferredIn": 0, "bytesTransferredOut": 1321},
    )


def _ev_kms_decrypt(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    a = g.acct
    key = rng.choice(a.keys)
    karn = f"arn:aws:kms:{g.region}:{a.id}:key/{key}"
    req = {
        "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "encryptionContext": {
            "aws:s3:arn": f"arn:aws:s3:::{rng.choice(a.buckets)}/data/part-{rng.randrange(1000):04d}.parquet"
        },
    }
    res = [{"accountId": a.id, "type": "AWS::KMS::Key", "ARN": karn}]
    actor = (
        _svc(g, rng.choice(("s3.amazonaws.com", "lambda.amazonaws.com", "secretsmanager.amazonaws.com")))
        if rng.random() < 0.5
        else g.machine(t, "kms.decrypt")
    )
    return _call(g, actor, t, "kms", "Decrypt", req, None, True, resources=res)


def _ev_kms_generate(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    a = g.acct
    karn = f"arn:aws:kms:{g.region}:{a.id}:key/{rng.choice(a.keys)}"
    req = {
        "keyId": karn,
        "keySpec": "AES_256",
        "encryptionContext": {"aws:logs:arn": f"arn:aws:logs:{g.region}:{a.id}:log-group:/aws/lambda/etl-ingest"},
    }
    res = [{"accountId": a.id, "type": "AWS::KMS::Key", "ARN": karn}]
    return _call(
        g,
        _svc(g, "logs.amazonaws.com") if rng.random() < 0.5 else g.machine(t, "kms.generate-data-key"),
        t,
        "kms",
        "GenerateDataKey",
        req,
        None,
        True,
        resources=res,
    )


def _ev_ssm_update_info(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    a = g.acct
    iid = rng.choice(a.instances)
    ident = g._session(_K_ROLE, 0, t, iid)
    req = {
        "instanceId": iid,
        "agentVersion": "3.3.131.0",
        "agentName": "amazon-ssm-agent",
        "platformType": "Linux",
        "platformName": "Amazon Linux",
        "platformVersion": "2023",
        "iPAddress": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
        "computerName": f"ip-10-0-{rng.randrange(256)}-{rng.randrange(256)}.ec2.internal",
        "agentStatus": "Active",
    }
    return _call(
        g,
        (ident, _K_ROLE, g.ip(), "aws-sdk-go/1.44.260 (go1.20.12; linux; amd64) amazon-ssm-agent/3.3.131.0"),
        t,
        "ssm",
        "UpdateInstanceInformation",
        req,
        None,
        False,
    )


def _ev_create_log_stream(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    fn = rng.choice(g.acct.functions)
    req = {"logGroupName": f"/aws/lambda/{fn}", "logStreamName": f"{g.day:%Y/%m/%d}/[$LATEST]{_hexs(rng, 32)}"}
    ident = g._session(_K_ROLE, 5, t, fn)
    return _call(
        g,
        (ident, _K_ROLE, g.ip(), "awslambda-worker/1.0 rusoto/0.48.0 rust/1.75.0 linux"),
        t,
        "logs",
        "CreateLogStream",
        req,
        None,
        False,
    )


def _ev_create_tags(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    # Tag values may hold any Unicode; readers must keep it intact.
    value = rng.choice(("Équipe Données", "データ基盤", "Zürich-Büro ☁", "команда-платформа", "plain-ascii"))
    req = {
        "resourcesSet": {"items": [{"resourceId": rng.choice(g.acct.instances)}]},
        "tagSet": {
            "items": [{"key": "Team", "value": value}, {"key": "CostCenter", "value": str(rng.randrange(100, 999))}]
        },
    }
    return _call(g, g.any(t, "ec2.create-tags"), t, "ec2", "CreateTags", req, {"_return": True}, False)


def _ev_ecs_create_cluster(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    name = f"svc-{rng.randrange(100)}"
    # ECS sends tags as a list of {key, value}; Lambda (below) sends an object.
    req = {"clusterName": name, "tags": [{"key": "team", "value": "platform"}, {"key": "env", "value": "prod"}]}
    resp = {
        "cluster": {
            "clusterArn": f"arn:aws:ecs:{g.region}:{g.acct.id}:cluster/{name}",
            "clusterName": name,
            "status": "ACTIVE",
            "registeredContainerInstancesCount": 0,
        }
    }
    return _call(g, g.machine(t, "ecs.create-cluster"), t, "ecs", "CreateCluster", req, resp, False)


def _ev_ecs_list_clusters(g: _Gen, t: int) -> dict[str, Any]:
    # maxResults arrives as a string here, as an int in DescribeInstances.
    return _call(g, g.any(t, "ecs.list-clusters"), t, "ecs", "ListClusters", {"maxResults": "100"}, None, True)


def _ev_lambda_tag(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    fn = rng.choice(g.acct.functions)
    req = {
        "resource": f"arn:aws:lambda:{g.region}:{g.acct.id}:function:{fn}",
        "tags": {"app.kubernetes.io/name": fn, "cost.center": "4711", "owner": "data-platform"},
    }
    return _call(
        g,
        g.machine(t, "lambda.tag-resource"),
        t,
        "lambda",
        "TagResource20170331v2",
        req,
        None,
        False,
        api_name="TagResource",
    )


def _ev_lambda_list(g: _Gen, t: int) -> dict[str, Any]:
    return _call(
        g,
        g.any(t, "lambda.list-functions"),
        t,
        "lambda",
        "ListFunctions20150331",
        {"functionVersion": "ALL"},
        None,
        True,
        api_name="ListFunctions",
    )


def _ev_lambda_get(g: _Gen, t: int) -> dict[str, Any]:
    fn = g.rng.choice(g.acct.functions)
    return _call(
        g,
        g.any(t, "lambda.get-function"),
        t,
        "lambda",
        "GetFunction20150331v2",
        {"functionName": fn},
        None,
        True,
        api_name="GetFunction",
    )


def _ev_glue_create_table(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    req = {
        "databaseName": "analytics",
        "tableInput": {
            "name": f"events_{rng.randrange(100)}",
            "storageDescriptor": {
                "columns": [
                    {"name": "id", "type": "string"},
                    {"name": "payload", "type": "struct<a:struct<b:array<struct<c:map<string,int>>>>>"},
                ],
                "location": f"s3://{g.acct.buckets[0]}/analytics/events/",
                "serdeInfo": {
                    "serializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                    "parameters": {"serialization.format": "1"},
                },
            },
            "partitionKeys": [{"name": "dt", "type": "string"}],
            "tableType": "EXTERNAL_TABLE",
            "parameters": {"classification": "parquet", "projection.enabled": "true", "projection.dt.type": "date"},
        },
    }
    return _call(g, g.machine(t, "glue.create-table"), t, "glue", "CreateTable", req, None, False)


def _ev_waf_update(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    # WAF rules nest statements deeply (>10 levels): exercises recursive schema handling.
    leaf = {
        "byteMatchStatement": {
            "searchString": "admin",
            "fieldToMatch": {"singleHeader": {"name": "x-role"}},
            "textTransformations": [{"priority": 0, "type": "LOWERCASE"}],
            "positionalConstraint": "CONTAINS",
        }
    }
    stmt = {
        "andStatement": {
            "statements": [
                {
                    "notStatement": {
                        "statement": {
                            "orStatement": {"statements": [leaf, {"geoMatchStatement": {"countryCodes": ["KP", "IR"]}}]}
                        }
                    }
                },
                {"rateBasedStatement": {"limit": 2000, "aggregateKeyType": "IP"}},
            ]
        }
    }
    req = {
        "name": "edge-acl",
        "scope": "REGIONAL",
        "id": _uuid(rng),
        "defaultAction": {"allow": {}},
        "rules": [
            {
                "name": "block-admin",
                "priority": 0,
                "statement": stmt,
                "action": {"block": {}},
                "visibilityConfig": {
                    "sampledRequestsEnabled": True,
                    "cloudWatchMetricsEnabled": True,
                    "metricName": "block-admin",
                },
            }
        ],
        "lockToken": _uuid(rng),
    }
    return _call(
        g, g.machine(t, "wafv2.update-web-acl"), t, "wafv2", "UpdateWebACL", req, {"nextLockToken": _uuid(rng)}, False
    )


@functools.lru_cache(maxsize=1)
def _inventory_items() -> list[dict[str, Any]]:
    rng = random.Random("inventory")
    publishers = ("Amazon Linux", "Fedora Project", "Ubuntu Developers", "Zoë Software GmbH", "株式会社サンプル")
    items = []
    for i in range(375):
        items.append(
            {
                "name": f"package-{i:04d}-{_token(rng, 10).lower()}",
                "version": f"{rng.randrange(10)}.{rng.randrange(40)}.{rng.randrange(100)}",
                "release": f"{rng.randrange(1, 9)}.amzn2023",
                "publisher": rng.choice(publishers),
                "architecture": "x86_64",
                "installedTime": "2024-02-01T10:11:12Z",
                "summary": "Synthetic package used to pad an SSM inventory report",
            }
        )
    return items


def _ev_put_inventory(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    iid = rng.choice(g.acct.instances)
    # ~90 KB of requestParameters: close to the 100 KB AWS keeps before it truncates.
    req = {
        "instanceId": iid,
        "items": [
            {
                "typeName": "AWS:Application",
                "schemaVersion": "1.1",
                "captureTime": _iso(t - 60),
                "contentHash": _hexs(rng, 64),
                "content": _inventory_items(),
            }
        ],
    }
    ident = g._session(_K_ROLE, 0, t, iid)
    return _call(
        g,
        (ident, _K_ROLE, g.ip(), "aws-sdk-go/1.44.260 (go1.20.12; linux; amd64) amazon-ssm-agent/3.3.131.0"),
        t,
        "ssm",
        "PutInventory",
        req,
        None,
        False,
    )


def _ev_future_field(g: _Gen, t: int) -> dict[str, Any]:
    rec = _ev_get_caller_identity(g, t)
    # A field AWS may add tomorrow: loaders must keep it rather than fail.
    rec["newFutureField"] = {"introducedIn": "1.10", "flags": ["a", "b"], "detail": {"score": 0.5}}
    return rec


def _ev_run_instances(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    a = g.acct
    iid = f"i-{_hexs(rng, 17)}"
    req: dict[str, Any] = {
        "instancesSet": {"items": [{"imageId": rng.choice(a.amis), "minCount": 1, "maxCount": 1}]},
        "instanceType": rng.choice(("t3.micro", "m6i.large", "c7g.xlarge")),
        "blockDeviceMapping": {},
        "monitoring": {"enabled": False},
        "disableApiTermination": False,
        "subnetId": rng.choice(a.subnets),
        "userData": "<sensitiveDataRemoved>",
        "iamInstanceProfile": {"name": "AppServerRole"},
    }
    resp = {
        "requestId": _uuid(rng),
        "reservationId": f"r-{_hexs(rng, 17)}",
        "ownerId": a.id,
        "groupSet": {},
        "instancesSet": {
            "items": [
                {
                    "instanceId": iid,
                    "imageId": req["instancesSet"]["items"][0]["imageId"],
                    "instanceState": {"code": 0, "name": "pending"},
                    "privateIpAddress": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                }
            ]
        },
    }
    return _call(g, g.machine(t, "ec2.run-instances"), t, "ec2", "RunInstances", req, resp, False)


def _ev_terminate(g: _Gen, t: int) -> dict[str, Any]:
    iid = g.rng.choice(g.acct.instances)
    req = {"instancesSet": {"items": [{"instanceId": iid}]}}
    resp = {
        "requestId": _uuid(g.rng),
        "instancesSet": {
            "items": [
                {
                    "instanceId": iid,
                    "currentState": {"code": 32, "name": "shutting-down"},
                    "previousState": {"code": 16, "name": "running"},
                }
            ]
        },
    }
    return _call(g, g.machine(t, "ec2.terminate-instances"), t, "ec2", "TerminateInstances", req, resp, False)


# ---- sign-in and service events


def _ev_console_login(g: _Gen, t: int, fail: bool | None = None) -> dict[str, Any]:
    rng = g.rng
    a = g.acct
    if fail is None:
        fail = rng.random() < 0.25
    x = rng.random()
    mfa = "Yes"
    if x < 0.08:
        ident: dict[str, Any] = {
            "type": "Root",
            "principalId": a.id,
            "arn": f"arn:aws:iam::{a.id}:root",
            "accountId": a.id,
            "accessKeyId": "",
        }
        login_to = "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true"
    elif x < 0.55:
        user = a.users[rng.choice((0, 1, 4))]
        mfa = "No" if user["userName"] == "legacy-admin" else "Yes"
        if fail:
            # Failed IAM user sign-ins carry no ARN, only the name typed in.
            ident = {
                "type": "IAMUser",
                "principalId": user["principalId"],
                "accountId": a.id,
                "accessKeyId": "",
                "userName": user["userName"],
            }
        else:
            ident = {k: v for k, v in user.items() if k != "accessKeyId"}
            ident["accessKeyId"] = ""
        login_to = "https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_us-east-1_abcdef"
    else:
        idx = rng.randrange(len(a.sso_roles))
        session = rng.choice(a.sso_roles[idx][3])
        ident = g._session(_K_SSO, idx, t, session)
        login_to = "https://console.aws.amazon.com/console/home"
        fail = False  # Identity Center failures happen at the IdP, not in the member account.
    rec: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": ident,
        "eventTime": _iso(t),
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": g.region,
        "sourceIPAddress": g.ip(),
        "userAgent": _UA_BROWSER,
    }
    if fail:
        rec["errorMessage"] = "Failed authentication"
    rec["requestParameters"] = None
    rec["responseElements"] = {"ConsoleLogin": "Failure" if fail else "Success"}
    rec["additionalEventData"] = {"LoginTo": login_to, "MobileVersion": "No", "MFAUsed": "No" if fail else mfa}
    rec["eventID"] = _uuid(rng)
    rec["readOnly"] = False
    rec["eventType"] = "AwsConsoleSignIn"
    rec["managementEvent"] = True
    rec["recipientAccountId"] = a.id
    rec["eventCategory"] = "Management"
    rec["tlsDetails"] = {
        "tlsVersion": "TLSv1.3",
        "cipherSuite": "TLS_AES_128_GCM_SHA256",
        "clientProvidedHostHeader": "signin.aws.amazon.com",
    }
    return rec


def _ev_console_login_fail(g: _Gen, t: int) -> dict[str, Any]:
    return _ev_console_login(g, t, fail=True)


def _service_event(
    g: _Gen,
    t: int,
    source: str,
    name: str,
    details: dict[str, Any],
    resources: list[dict[str, Any]] | None,
    ident: dict[str, Any] | None = None,
) -> dict[str, Any]:
    rng = g.rng
    rec: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": ident if ident is not None else {"accountId": g.acct.id, "invokedBy": source},
        "eventTime": _iso(t),
        "eventSource": source,
        "eventName": name,
        "awsRegion": g.region,
        "sourceIPAddress": source,
        "userAgent": source,
        "requestParameters": None,
        "responseElements": None,
        "eventID": _uuid(rng),
        "readOnly": False,
    }
    if resources is not None:
        rec["resources"] = resources
    rec["eventType"] = "AwsServiceEvent"
    rec["managementEvent"] = True
    rec["recipientAccountId"] = g.acct.id
    rec["serviceEventDetails"] = details
    rec["eventCategory"] = "Management"
    return rec


def _ev_rotate_key(g: _Gen, t: int) -> dict[str, Any]:
    a = g.acct
    key = g.rng.choice(a.keys)
    res = [{"accountId": a.id, "type": "AWS::KMS::Key", "ARN": f"arn:aws:kms:{g.region}:{a.id}:key/{key}"}]
    return _service_event(g, t, "kms.amazonaws.com", "RotateKey", {"keyId": key}, res)


def _ev_credential_verification(g: _Gen, t: int) -> dict[str, Any]:
    user = g.acct.users[g.rng.choice((0, 1))]
    ident = {
        "type": "IAMUser",
        "principalId": user["principalId"],
        "arn": user["arn"],
        "accountId": g.acct.id,
        "accessKeyId": "",
        "userName": user["userName"],
    }
    details = {"CredentialType": "PASSWORD", "CredentialVerification": "Success"}
    rec = _service_event(g, t, "signin.amazonaws.com", "CredentialVerification", details, None, ident)
    rec["sourceIPAddress"] = g.ip()
    rec["userAgent"] = _UA_BROWSER
    rec["additionalEventData"] = {
        "LoginTo": "https://console.aws.amazon.com/console/home",
        "MobileVersion": "No",
        "MFAUsed": "Yes",
    }
    return rec


def _ev_backup_completed(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    a = g.acct
    details = {
        "backupJobId": _uuid(rng).upper(),
        "backupVaultName": "Default",
        "resourceArn": f"arn:aws:ec2:{g.region}:{a.id}:volume/vol-{_hexs(rng, 17)}",
        "state": "COMPLETED",
        "percentDone": "100.0",
        "backupSizeInBytes": rng.randrange(10**9, 10**11),
        "creationDate": {"seconds": t - 3600, "nanos": 0},
        "completionDate": {"seconds": t - 30, "nanos": 0},
    }
    return _service_event(g, t, "backup.amazonaws.com", "BackupJobCompleted", details, None)


# ---- security-relevant writes (a few % of all events)


def _sg_perms(rng: random.Random, open_world: bool) -> dict[str, Any]:
    port = rng.choice((22, 3389, 443, 5432))
    v4 = "0.0.0.0/0" if open_world else f"10.{rng.randrange(256)}.0.0/16"
    item: dict[str, Any] = {
        "ipProtocol": "tcp",
        "fromPort": port,
        "toPort": port,
        "groups": {},
        "ipRanges": {"items": [{"cidrIp": v4, "description": "temp access"}]},
        "prefixListIds": {},
    }
    item["ipv6Ranges"] = {"items": [{"cidrIpv6": "::/0"}]} if open_world and rng.random() < 0.5 else {}
    return {"items": [item]}


def _ev_authorize_sg(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    sg = rng.choice(g.acct.sgs)
    open_world = rng.random() < 0.6
    req: dict[str, Any] = {"groupId": sg, "ipPermissions": _sg_perms(rng, open_world)}
    perm = req["ipPermissions"]["items"][0]
    rules = []
    # One rule per CIDR granted, echoing the request as EC2 does.
    for cidr_key, cidr in [("cidrIpv4", r["cidrIp"]) for r in perm["ipRanges"]["items"]] + [
        ("cidrIpv6", r["cidrIpv6"]) for r in perm["ipv6Ranges"].get("items", [])
    ]:
        rules.append(
            {
                "groupOwnerId": g.acct.id,
                "groupId": sg,
                "securityGroupRuleId": f"sgr-{_hexs(rng, 17)}",
                "isEgress": False,
                "ipProtocol": "tcp",
                "fromPort": perm["fromPort"],
                "toPort": perm["toPort"],
                cidr_key: cidr,
            }
        )
    resp = {"requestId": _uuid(rng), "_return": True, "securityGroupRuleSet": {"items": rules}}
    actor = (
        g.human(t, "ec2.authorize-security-group-ingress")
        if rng.random() < 0.7
        else g.machine(t, "ec2.authorize-security-group-ingress")
    )
    return _call(g, actor, t, "ec2", "AuthorizeSecurityGroupIngress", req, resp, False)


def _ev_revoke_sg(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    req = {"groupId": rng.choice(g.acct.sgs), "ipPermissions": _sg_perms(rng, rng.random() < 0.5)}
    return _call(
        g,
        g.any(t, "ec2.revoke-security-group-ingress"),
        t,
        "ec2",
        "RevokeSecurityGroupIngress",
        req,
        {"requestId": _uuid(rng), "_return": True},
        False,
    )


def _ev_modify_sg_rules(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    req = {
        "ModifySecurityGroupRulesRequest": {
            "GroupId": rng.choice(g.acct.sgs),
            "SecurityGroupRule": {
                "SecurityGroupRuleId": f"sgr-{_hexs(rng, 17)}",
                "SecurityGroupRule": {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "CidrIpv4": "0.0.0.0/0",
                    "Description": "",
                },
            },
        }
    }
    resp = {"ModifySecurityGroupRulesResponse": {"requestId": _uuid(rng), "return": True}}
    return _call(
        g, g.human(t, "ec2.modify-security-group-rules"), t, "ec2", "ModifySecurityGroupRules", req, resp, False
    )


def _ev_create_user(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    name = rng.choice(("tmp-admin", "svc-export", "contractor-01", "backup"))
    resp = {
        "user": {
            "path": "/",
            "userName": name,
            "userId": "AIDA" + _token(rng, 17, _UPPER_NUM),
            "arn": f"arn:aws:iam::{g.acct.id}:user/{name}",
            "createDate": _expiration(t),
        }
    }
    return _call(
        g, g.human(t, "iam.create-user"), t, "iam", "CreateUser", {"userName": name}, resp, False, version="1.09"
    )


def _ev_create_access_key(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    a = g.acct
    name = a.users[rng.randrange(len(a.users))]["userName"]
    resp = {
        "accessKey": {
            "userName": name,
            "accessKeyId": "AKIA" + _token(rng, 16, _UPPER_NUM),
            "status": "Active",
            "createDate": _expiration(t),
        }
    }
    if rng.random() < 0.15:
        actor = g._session(_K_ROOT, 0, t, "root"), _K_ROOT, g.ip(), _UA_BROWSER
    else:
        actor = g.human(t, "iam.create-access-key")
    return _call(g, actor, t, "iam", "CreateAccessKey", {"userName": name}, resp, False, version="1.09")


def _ev_put_user_policy(g: _Gen, t: int) -> dict[str, Any]:
    a = g.acct
    name = a.users[g.rng.randrange(len(a.users))]["userName"]
    doc = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
    req = {"userName": name, "policyName": "inline-admin", "policyDocument": doc}
    return _call(g, g.human(t, "iam.put-user-policy"), t, "iam", "PutUserPolicy", req, None, False, version="1.09")


def _ev_attach_role_policy(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    role = rng.choice(g.acct.roles)[0]
    policy = rng.choice(
        (
            "arn:aws:iam::aws:policy/AdministratorAccess",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "arn:aws:iam::aws:policy/AmazonS3FullAccess",
        )
    )
    return _call(
        g,
        g.any(t, "iam.attach-role-policy"),
        t,
        "iam",
        "AttachRolePolicy",
        {"roleName": role, "policyArn": policy},
        None,
        False,
        version="1.09",
    )


def _trail_arn(g: _Gen) -> str:
    return f"arn:aws:cloudtrail:us-east-1:{g.acct.id}:trail/management-events"


def _ev_stop_logging(g: _Gen, t: int) -> dict[str, Any]:
    return _call(
        g,
        g.human(t, "cloudtrail.stop-logging"),
        t,
        "cloudtrail",
        "StopLogging",
        {"name": _trail_arn(g)},
        None,
        False,
        version="1.09",
    )


def _ev_update_trail(g: _Gen, t: int) -> dict[str, Any]:
    req = {
        "name": "management-events",
        "s3BucketName": g.acct.buckets[1],
        "isMultiRegionTrail": False,
        "enableLogFileValidation": False,
    }
    resp = {
        "name": "management-events",
        "s3BucketName": g.acct.buckets[1],
        "includeGlobalServiceEvents": True,
        "isMultiRegionTrail": False,
        "trailARN": _trail_arn(g),
        "logFileValidationEnabled": False,
        "isOrganizationTrail": False,
    }
    return _call(
        g, g.human(t, "cloudtrail.update-trail"), t, "cloudtrail", "UpdateTrail", req, resp, False, version="1.09"
    )


def _ev_put_event_selectors(g: _Gen, t: int) -> dict[str, Any]:
    sel = [
        {
            "readWriteType": "WriteOnly",
            "includeManagementEvents": False,
            "dataResources": [],
            "excludeManagementEventSources": ["kms.amazonaws.com", "rdsdata.amazonaws.com"],
        }
    ]
    req = {"trailName": "management-events", "eventSelectors": sel}
    resp = {"trailARN": _trail_arn(g), "eventSelectors": sel}
    return _call(
        g,
        g.human(t, "cloudtrail.put-event-selectors"),
        t,
        "cloudtrail",
        "PutEventSelectors",
        req,
        resp,
        False,
        version="1.09",
    )


def _ev_delete_trail(g: _Gen, t: int) -> dict[str, Any]:
    return _call(
        g,
        g.human(t, "cloudtrail.delete-trail"),
        t,
        "cloudtrail",
        "DeleteTrail",
        {"name": _trail_arn(g)},
        None,
        False,
        version="1.09",
    )


def _ev_put_bucket_policy(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    b = rng.choice(g.acct.buckets)
    public = rng.random() < 0.4
    principal: Any = "*" if public else {"AWS": f"arn:aws:iam::{g.acct.id}:root"}
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Share",
                "Effect": "Allow",
                "Principal": principal,
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{b}/*",
            }
        ],
    }
    req = {"bucketName": b, "Host": f"{b}.s3.{g.region}.amazonaws.com", "bucketPolicy": policy, "policy": ""}
    res = [{"accountId": g.acct.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]
    return _call(g, g.human(t, "s3api.put-bucket-policy"), t, "s3", "PutBucketPolicy", req, None, False, resources=res)


def _ev_put_bucket_acl(g: _Gen, t: int) -> dict[str, Any]:
    b = g.rng.choice(g.acct.buckets)
    acl = {
        "xmlns": "http://s3.amazonaws.com/doc/2006-03-01/",
        "Owner": {"ID": _hexs(g.rng, 64)},
        "AccessControlList": {
            "Grant": [
                {
                    "Grantee": {
                        "xsi:type": "Group",
                        "URI": "http://acs.amazonaws.com/groups/global/AllUsers",
                        "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
                    },
                    "Permission": "READ",
                }
            ]
        },
    }
    req = {"bucketName": b, "Host": f"{b}.s3.{g.region}.amazonaws.com", "acl": "", "AccessControlPolicy": acl}
    res = [{"accountId": g.acct.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]
    return _call(g, g.human(t, "s3api.put-bucket-acl"), t, "s3", "PutBucketAcl", req, None, False, resources=res)


def _ev_delete_pab(g: _Gen, t: int) -> dict[str, Any]:
    b = g.rng.choice(g.acct.buckets)
    req = {"bucketName": b, "Host": f"{b}.s3.{g.region}.amazonaws.com", "publicAccessBlock": ""}
    res = [{"accountId": g.acct.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]
    return _call(
        g,
        g.human(t, "s3api.delete-public-access-block"),
        t,
        "s3",
        "DeleteBucketPublicAccessBlock",
        req,
        None,
        False,
        resources=res,
    )


def _ev_disable_key(g: _Gen, t: int) -> dict[str, Any]:
    a = g.acct
    karn = f"arn:aws:kms:{g.region}:{a.id}:key/{g.rng.choice(a.keys)}"
    res = [{"accountId": a.id, "type": "AWS::KMS::Key", "ARN": karn}]
    return _call(g, g.human(t, "kms.disable-key"), t, "kms", "DisableKey", {"keyId": karn}, None, False, resources=res)


def _ev_schedule_key_deletion(g: _Gen, t: int) -> dict[str, Any]:
    a = g.acct
    karn = f"arn:aws:kms:{g.region}:{a.id}:key/{g.rng.choice(a.keys)}"
    res = [{"accountId": a.id, "type": "AWS::KMS::Key", "ARN": karn}]
    resp = {
        "keyId": karn,
        "deletionDate": _expiration(t + 7 * 86400),
        "keyState": "PendingDeletion",
        "pendingWindowInDays": 7,
    }
    return _call(
        g,
        g.human(t, "kms.schedule-key-deletion"),
        t,
        "kms",
        "ScheduleKeyDeletion",
        {"keyId": karn, "pendingWindowInDays": 7},
        resp,
        False,
        resources=res,
    )


def _ev_stop_recorder(g: _Gen, t: int) -> dict[str, Any]:
    return _call(
        g,
        g.human(t, "configservice.stop-configuration-recorder"),
        t,
        "config",
        "StopConfigurationRecorder",
        {"configurationRecorderName": "default"},
        None,
        False,
    )


def _ev_delete_detector(g: _Gen, t: int) -> dict[str, Any]:
    return _call(
        g,
        g.human(t, "guardduty.delete-detector"),
        t,
        "guardduty",
        "DeleteDetector",
        {"detectorId": g.acct.detector},
        None,
        False,
    )


def _ev_disable_securityhub(g: _Gen, t: int) -> dict[str, Any]:
    return _call(
        g, g.human(t, "securityhub.disable-security-hub"), t, "securityhub", "DisableSecurityHub", None, None, False
    )


def _ev_create_nacl(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    vpc = rng.choice(g.acct.vpcs)
    nacl = f"acl-{_hexs(rng, 17)}"
    resp = {
        "requestId": _uuid(rng),
        "networkAcl": {
            "networkAclId": nacl,
            "vpcId": vpc,
            "default": False,
            "entrySet": {},
            "associationSet": {},
            "tagSet": {},
            "ownerId": g.acct.id,
        },
    }
    return _call(g, g.any(t, "ec2.create-network-acl"), t, "ec2", "CreateNetworkAcl", {"vpcId": vpc}, resp, False)


def _ev_create_nacl_entry(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    req = {
        "networkAclId": f"acl-{_hexs(rng, 17)}",
        "ruleNumber": rng.choice((100, 110, 200)),
        "egress": False,
        "ruleAction": "allow",
        "icmpTypeCode": {},
        "protocol": "6",
        "portRange": {"from": 22, "to": 22},
        "cidrBlock": "0.0.0.0/0",
    }
    return _call(
        g,
        g.any(t, "ec2.create-network-acl-entry"),
        t,
        "ec2",
        "CreateNetworkAclEntry",
        req,
        {"requestId": _uuid(rng), "_return": True},
        False,
    )


def _ev_create_route(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    req = {
        "routeTableId": f"rtb-{_hexs(rng, 17)}",
        "destinationCidrBlock": "0.0.0.0/0",
        "gatewayId": f"igw-{_hexs(rng, 17)}",
    }
    return _call(
        g, g.any(t, "ec2.create-route"), t, "ec2", "CreateRoute", req, {"requestId": _uuid(rng), "_return": True}, False
    )


def _ev_attach_igw(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    req = {"internetGatewayId": f"igw-{_hexs(rng, 17)}", "vpcId": rng.choice(g.acct.vpcs)}
    return _call(
        g,
        g.any(t, "ec2.attach-internet-gateway"),
        t,
        "ec2",
        "AttachInternetGateway",
        req,
        {"requestId": _uuid(rng), "_return": True},
        False,
    )


def _ev_create_vpc(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    cidr = f"10.{rng.randrange(256)}.0.0/16"
    vpc = f"vpc-{_hexs(rng, 17)}"
    resp = {
        "requestId": _uuid(rng),
        "vpc": {
            "vpcId": vpc,
            "state": "pending",
            "ownerId": g.acct.id,
            "cidrBlock": cidr,
            "instanceTenancy": "default",
            "isDefault": False,
        },
    }
    return _call(
        g,
        g.machine(t, "ec2.create-vpc"),
        t,
        "ec2",
        "CreateVpc",
        {"cidrBlock": cidr, "instanceTenancy": "default"},
        resp,
        False,
    )


def _ev_leave_org(g: _Gen, t: int) -> dict[str, Any]:
    return _call(
        g,
        g.human(t, "organizations.leave-organization"),
        t,
        "organizations",
        "LeaveOrganization",
        None,
        None,
        False,
        version="1.09",
    )


def _ev_update_function_code(g: _Gen, t: int) -> dict[str, Any]:
    rng = g.rng
    fn = rng.choice(g.acct.functions)
    req = {
        "functionName": fn,
        "publish": True,
        "dryRun": False,
        "s3Bucket": g.acct.buckets[2],
        "s3Key": f"lambda/{fn}-{_hexs(rng, 8)}.zip",
    }
    resp = {
        "functionName": fn,
        "functionArn": f"arn:aws:lambda:{g.region}:{g.acct.id}:function:{fn}",
        "runtime": "python3.12",
        "codeSize": rng.randrange(10**4, 10**7),
        "version": str(rng.randrange(1, 90)),
        "lastUpdateStatus": "InProgress",
    }
    return _call(
        g,
        g.machine(t, "lambda.update-function-code"),
        t,
        "lambda",
        "UpdateFunctionCode20150331v2",
        req,
        resp,
        False,
        api_name="UpdateFunctionCode",
    )


def _ev_root_read(g: _Gen, t: int) -> dict[str, Any]:
    actor = g._session(_K_ROOT, 0, t, "root"), _K_ROOT, g.ip(), _UA_BROWSER
    name = g.rng.choice(("ListBuckets", "GetAccountSummary", "ListUsers"))
    service = "s3" if name == "ListBuckets" else "iam"
    req = {"Host": "s3.amazonaws.com"} if service == "s3" else None
    return _call(g, actor, t, service, name, req, None, True)


def _r_instances_sg(g: _Gen) -> Any:
    return {
        "securityGroupSet": {},
        "securityGroupIdSet": {"items": [{"groupId": g.rng.choice(g.acct.sgs)}]},
        "filterSet": {},
    }


def _r_vpcs(g: _Gen) -> Any:
    return {"vpcSet": {}, "filterSet": {}}


def _r_subnets(g: _Gen) -> Any:
    return {
        "subnetSet": {},
        "filterSet": {"items": [{"name": "vpc-id", "valueSet": {"items": [{"value": g.rng.choice(g.acct.vpcs)}]}}]},
    }


def _r_enis(g: _Gen) -> Any:
    return {
        "networkInterfaceIdSet": {},
        "filterSet": {
            "items": [
                {"name": "attachment.instance-id", "valueSet": {"items": [{"value": g.rng.choice(g.acct.instances)}]}}
            ]
        },
    }


def _r_regions(g: _Gen) -> Any:
    return {"regionSet": {}, "allRegions": False}


def _r_volumes(g: _Gen) -> Any:
    return {"volumeSet": {}, "filterSet": {}, "maxResults": 500}


def _r_role(g: _Gen) -> Any:
    return {"roleName": g.rng.choice(g.acct.roles)[0]}


def _r_list_policies(g: _Gen) -> Any:
    return {"roleName": g.rng.choice(g.acct.roles)[0]}


def _r_policy_version(g: _Gen) -> Any:
    return {"policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess", "versionId": f"v{g.rng.randrange(1, 120)}"}


def _r_log_groups(g: _Gen) -> Any:
    return {"limit": 50} if g.rng.random() < 0.5 else None


def _r_trail_status(g: _Gen) -> Any:
    return {"name": _trail_arn(g)}


def _r_trails(g: _Gen) -> Any:
    return {"trailNameList": [], "includeShadowTrails": True}


def _r_parameter(g: _Gen) -> Any:
    return {
        "name": g.rng.choice(("/app/prod/db-host", "/app/prod/feature-flags", "/platform/datadog/api-key")),
        "withDecryption": True,
    }


def _r_key(g: _Gen) -> Any:
    return {"keyId": g.rng.choice(g.acct.keys)}


def _r_recorders(g: _Gen) -> Any:
    return {"configurationRecorderNames": []}


def _r_sso_read(g: _Gen) -> Any:
    return None


_TEMPLATES: tuple[tuple[float, Template], ...] = (
    # benign reads (bulk)
    (11.0, _ev_describe_instances),
    (5.0, _simple_read("ec2", "DescribeSecurityGroups", _r_instances_sg)),
    (3.0, _simple_read("ec2", "DescribeVpcs", _r_vpcs)),
    (3.0, _simple_read("ec2", "DescribeSubnets", _r_subnets)),
    (3.0, _svc_read("ec2", "DescribeNetworkInterfaces", "autoscaling.amazonaws.com", _r_enis)),
    (1.0, _simple_read("ec2", "DescribeRegions", _r_regions)),
    (2.0, _simple_read("ec2", "DescribeVolumes", _r_volumes, "machine")),
    (3.0, _ev_list_buckets),
    (4.0, _ev_get_bucket_acl),
    (3.0, _s3_bucket_read("GetBucketLocation", "location")),
    (2.0, _s3_bucket_read("GetBucketPolicy", "policy")),
    (1.0, _s3_bucket_read("GetBucketEncryption", "encryption")),
    (1.0, _s3_bucket_read("GetBucketPublicAccessBlock", "publicAccessBlock")),
    (2.0, _simple_read("iam", "ListRoles", _none, version="1.09")),
    (3.0, _simple_read("iam", "GetRole", _r_role, version="1.09")),
    (1.0, _simple_read("iam", "ListUsers", _none, "human", version="1.09")),
    (2.0, _simple_read("iam", "ListAttachedRolePolicies", _r_list_policies, version="1.09")),
    (1.0, _simple_read("iam", "GetPolicyVersion", _r_policy_version, version="1.09")),
    (6.0, _ev_get_caller_identity),
    (8.0, _ev_assume_role),
    (1.0, _ev_assume_role_web_identity),
    (6.0, _ev_kms_decrypt),
    (3.0, _ev_kms_generate),
    (1.0, _simple_read("kms", "DescribeKey", _r_key, "machine")),
    (1.0, _ev_lambda_list),
    (1.0, _ev_lambda_get),
    (2.0, _simple_read("logs", "DescribeLogGroups", _r_log_groups)),
    (1.0, _ev_create_log_stream),
    (1.0, _simple_read("cloudtrail", "DescribeTrails", _r_trails, version="1.09")),
    (1.0, _simple_read("cloudtrail", "GetTrailStatus", _r_trail_status, version="1.09")),
    (0.5, _simple_read("cloudtrail", "LookupEvents", _none, "human", version="1.09")),
    (0.5, _simple_read("config", "DescribeConfigurationRecorders", _r_recorders)),
    (3.0, _simple_read("ssm", "GetParameter", _r_parameter, "machine")),
    (3.0, _ev_ssm_update_info),
    (0.5, _ev_ecs_list_clusters),
    (0.3, _simple_read("sso", "ListAccountRoles", _r_sso_read, "human")),
    # benign writes and odd payloads
    (0.4, _ev_create_tags),
    (0.3, _ev_ecs_create_cluster),
    (0.3, _ev_lambda_tag),
    (0.15, _ev_glue_create_table),
    (0.1, _ev_waf_update),
    (0.035, _ev_put_inventory),
    (0.03, _ev_future_field),
    (0.4, _ev_run_instances),
    (0.15, _ev_terminate),
    (0.15, _ev_update_function_code),
    # sign-in and service events
    (0.9, _ev_console_login),
    (0.3, _ev_console_login_fail),
    (0.2, _ev_credential_verification),
    (0.2, _ev_rotate_key),
    (0.15, _ev_backup_completed),
    # security-relevant
    (0.4, _ev_authorize_sg),
    (0.2, _ev_revoke_sg),
    (0.1, _ev_modify_sg_rules),
    (0.1, _ev_create_user),
    (0.15, _ev_create_access_key),
    (0.05, _ev_put_user_policy),
    (0.1, _ev_attach_role_policy),
    (0.02, _ev_stop_logging),
    (0.03, _ev_update_trail),
    (0.03, _ev_put_event_selectors),
    (0.01, _ev_delete_trail),
    (0.1, _ev_put_bucket_policy),
    (0.05, _ev_put_bucket_acl),
    (0.03, _ev_delete_pab),
    (0.02, _ev_disable_key),
    (0.02, _ev_schedule_key_deletion),
    (0.02, _ev_stop_recorder),
    (0.01, _ev_delete_detector),
    (0.01, _ev_disable_securityhub),
    (0.03, _ev_create_nacl),
    (0.05, _ev_create_nacl_entry),
    (0.05, _ev_create_route),
    (0.03, _ev_attach_igw),
    (0.03, _ev_create_vpc),
    (0.005, _ev_leave_org),
    (0.08, _ev_root_read),
)
_FUNCS = [f for _, f in _TEMPLATES]
_CUM: list[float] = []
_acc = 0.0
for _w, _ in _TEMPLATES:
    _acc += _w
    _CUM.append(_acc)
del _acc, _w


def _events(g: _Gen, delivery: int, n: int) -> list[dict[str, Any]]:
    rng = g.rng
    out = []
    for fn in rng.choices(_FUNCS, cum_weights=_CUM, k=n):
        # Unsorted within a file, all within the window before delivery, like CloudTrail.
        out.append(fn(g, delivery - rng.randrange(1, _WINDOW)))
    return out
