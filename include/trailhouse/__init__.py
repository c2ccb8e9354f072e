"""trailhouse: CloudTrail logs of many AWS accounts into one queryable, alerting warehouse."""

__version__ = "0.1.0"
