"""`trailhouse mav`: add, list and validate multi-account views."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    mav = sub.add_parser("mav", help="add, list and validate multi-account views").add_subparsers(metavar="ACTION")
    add = mav.add_parser("add", help="register a MAV (a bucket read with one IAM key pair, or a local folder)")
    add.add_argument("name")
    where = add.add_mutually_exclusive_group(required=True)
    where.add_argument("--bucket", help="the aggregate CloudTrail bucket")
    where.add_argument("--path", help="a local folder in the bucket's layout (e.g. after `aws s3 sync`)")
    add.add_argument("--prefix", default="", help="the part of the keys before AWSLogs/")
    add.add_argument("--credentials-csv", type=Path, help="the IAM console's access key .csv (with --bucket)")
    add.add_argument("--endpoint-url", help="an S3-compatible endpoint instead of AWS")
    add.add_argument("--region", default="us-east-1", help="the bucket's region (default us-east-1)")
    add.add_argument("--accounts", default="", help="comma-separated account ids to limit the MAV to")
    add.add_argument("--lookback-hours", type=int, default=24, help="how far back each run re-lists (default 24)")
    add.add_argument("--queue-url", help="notification mode: the SQS queue fed by CloudTrail's SNS topic or S3 events")
    add.add_argument("--description", default="")
    add.set_defaults(func=cmd_mav_add)
    ls = mav.add_parser("list", help="list the MAVs and any broken MAV files")
    ls.set_defaults(func=cmd_mav_list)
    val = mav.add_parser("validate", help="print the IAM user's permission report (exit 1 if a required action is missing)")
    val.add_argument("name")
    val.add_argument("--json", action="store_true")
    val.set_defaults(func=cmd_mav_validate)
    rot = mav.add_parser("rotate-key", help="store a bucket MAV's new IAM key pair (after rotating it in IAM)")
    rot.add_argument("name")
    rot.add_argument("--credentials-csv", type=Path, required=True, help="the IAM console's .csv of the new key")
    rot.set_defaults(func=cmd_mav_rotate_key)


def cmd_mav_add(args: argparse.Namespace) -> int:
    from trailhouse.config import ConfigError, make_mav, read_credentials_csv
    from trailhouse.pipeline import setup

    cfg = args.dep.settings
    accounts = [a.strip() for a in args.accounts.split(",") if a.strip()]
    mav = make_mav(
        name=args.name,
        bucket=args.bucket,
        path=str(Path(args.path).resolve()) if args.path else None,
        prefix=args.prefix,
        region=args.region,
        endpoint_url=args.endpoint_url,
        accounts=accounts,
        lookback_hours=args.lookback_hours,
        queue_url=args.queue_url,
        description=args.description,
    )
    key_pair = None
    if mav.bucket:
        if not args.credentials_csv:
            raise ConfigError("--bucket needs --credentials-csv FILE (the IAM console's access key .csv)")
        key_pair = read_credentials_csv(args.credentials_csv)
    path = setup.add_mav(cfg.mav_dir, mav, key_pair)
    print(f"MAV {mav.name!r} saved to {path}")
    if mav.connection_id:
        print(f"key pair stored in the Airflow connection {mav.connection_id!r} (not in the YAML)")
    print(f"next: trailhouse mav validate {mav.name} && trailhouse run {mav.name}")
    return 0


def cmd_mav_list(args: argparse.Namespace) -> int:
    from trailhouse.config import ConfigError, scan_mavs

    cfg = args.dep.settings
    found = scan_mavs(cfg.mav_dir)
    if not found:
        print(f"no MAVs in {cfg.mav_dir}; add one with `trailhouse mav add`")
    status = 0
    for _path, mav in found:
        if isinstance(mav, ConfigError):
            print(f"BROKEN {mav}")
            status = 1
        else:
            print(f"{mav.name:20} {mav.source_label:50} {','.join(mav.accounts) or 'all accounts'}")
    return status


def cmd_mav_validate(args: argparse.Namespace) -> int:
    from trailhouse.pipeline import setup

    mav = args.dep.mav(args.name)
    report = setup.access_report(mav)
    if report is None:
        print(f"{mav.name}: local folder {mav.path} is readable")
        return 0
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


def cmd_mav_rotate_key(args: argparse.Namespace) -> int:
    from trailhouse.config import ConfigError, read_credentials_csv
    from trailhouse.pipeline import setup

    mav = args.dep.mav(args.name)
    if not mav.connection_id:
        raise ConfigError(f"MAV {mav.name!r} reads the local folder {mav.path}: it has no key pair to rotate")
    setup.add_mav(args.dep.settings.mav_dir, mav, read_credentials_csv(args.credentials_csv))
    print(f"new key pair stored in the Airflow connection {mav.connection_id!r}; the next run uses it")
    print(f"next: trailhouse mav validate {mav.name}")
    return 0
