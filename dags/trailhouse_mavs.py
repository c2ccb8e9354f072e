"""trailhouse: one Airflow DAG per multi-account view (MAV), `trailhouse_mav_<name>`.

Each YAML file in $TRAILHOUSE_HOME/mavs (written by `trailhouse mav add`) becomes a DAG:
validate_access >> discover >> transform (mapped over batches of keys) >> commit.
See docs/architecture.md.
"""

from __future__ import annotations

from trailhouse.pipeline.dag_factory import build_all

globals().update(build_all())
