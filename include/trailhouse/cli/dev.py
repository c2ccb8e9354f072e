"""`trailhouse synth` and `trailhouse demo`: synthetic data and the whole job on it."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    syn = sub.add_parser("synth", help="write a synthetic aggregate CloudTrail bucket")
    dest = syn.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", type=Path, help="a local folder")
    dest.add_argument("--bucket", help="an S3 bucket (created if missing)")
    syn.add_argument("--endpoint-url")
    syn.add_argument("--seed", type=int, default=7)
    syn.add_argument("--accounts", type=int, default=6)
    syn.add_argument("--days", type=int, default=3)
    syn.add_argument("--end", type=date.fromisoformat, default=None, help="last day (default: yesterday, UTC)")
    syn.add_argument("--events-per-file", type=int, default=40)
    syn.add_argument("--files-per-region-day", type=int, default=8)
    syn.add_argument("--prefix", default="")
    syn.set_defaults(func=cmd_synth)

    demo = sub.add_parser("demo", help="the whole job on a local S3 endpoint with synthetic data")
    demo.set_defaults(func=cmd_demo)


def _spec(args: argparse.Namespace, bucket: str = "trailhouse-demo") -> Any:
    from trailhouse.dev.synth.world import SynthSpec

    end = args.end or (datetime.now(UTC).date() - timedelta(days=1))
    return SynthSpec(
        seed=args.seed, accounts=args.accounts, days=args.days, end=end, events_per_file=args.events_per_file,
        files_per_region_day=args.files_per_region_day, prefix=args.prefix, bucket=bucket,
    )


def cmd_synth(args: argparse.Namespace) -> int:
    import boto3

    from trailhouse.dev.synth.files import write_to_dir, write_to_s3

    if args.out:
        summary = write_to_dir(_spec(args), args.out)
        where = str(args.out)
    else:
        client = boto3.client("s3", endpoint_url=args.endpoint_url, region_name="us-east-1")
        try:
            client.create_bucket(Bucket=args.bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        summary = write_to_s3(_spec(args, args.bucket), client, args.bucket)
        where = f"s3://{args.bucket}"
    print(f"wrote {summary.objects:,} objects ({summary.log_files:,} log files, {summary.digest_files:,} digests, "
          f"{summary.insight_files:,} Insights files), {summary.events:,} events "
          f"({summary.unique_events:,} unique) for {len(summary.accounts)} accounts to {where}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from trailhouse.dev import demo

    return demo.main(args.dep)
