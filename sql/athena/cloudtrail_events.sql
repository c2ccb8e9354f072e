-- trailhouse's events table in Amazon Athena (engine version 3), read natively as Delta Lake.
--
-- Replace before running:
--   <warehouse-bucket>  the bucket (and prefix, if any) of TRAILHOUSE_WAREHOUSE: the table
--                       is always $TRAILHOUSE_WAREHOUSE/cloudtrail_events/
--   trailhouse          the AWS Glue database to register the table in (any name)
--   the dates and the ARN in the example queries
--
-- Athena takes the columns, their types and the partition column (event_date) from the
-- table's Delta log, so the statement names no column: for Delta Lake tables Athena allows
-- nothing but LOCATION and the table_type property. No MSCK REPAIR TABLE or ADD PARTITION is
-- ever needed: each query reads the table's latest commit. Columns: include/trailhouse/warehouse/schema.py.
--
-- Filter every query on event_date (the UTC day of event_time): it is the partition column,
-- so Athena reads, and bills, only those days' files.

CREATE DATABASE IF NOT EXISTS trailhouse;

CREATE EXTERNAL TABLE trailhouse.cloudtrail_events
LOCATION 's3://<warehouse-bucket>/cloudtrail_events/'
TBLPROPERTIES ('table_type' = 'DELTA');


-- Example 1: failed calls by account and error over the last 7 days.
SELECT account_id,
       error_code,
       count(*)                      AS errors,
       count(DISTINCT principal_arn) AS principals,
       max(event_time)               AS last_seen
FROM trailhouse.cloudtrail_events
WHERE event_date >= current_date - INTERVAL '7' DAY
  AND error_code IS NOT NULL
GROUP BY account_id, error_code
ORDER BY errors DESC
LIMIT 100;

-- Example 2: everything one principal did during one day. For every session of a role,
-- filter on session_issuer_arn = 'arn:aws:iam::123456789012:role/NAME' instead.
SELECT event_time,
       account_id,
       region,
       event_source,
       event_name,
       source_ip_address,
       user_agent,
       error_code,
       request_parameters
FROM trailhouse.cloudtrail_events
WHERE event_date = DATE '2024-06-03'
  AND principal_arn = 'arn:aws:iam::123456789012:user/alice'
ORDER BY event_time;

-- Example 3: security group changes during a week, with the group they touched.
SELECT event_time,
       account_id,
       region,
       event_name,
       coalesce(json_extract_scalar(request_parameters, '$.groupId'),
                json_extract_scalar(request_parameters, '$.ModifySecurityGroupRulesRequest.GroupId'),
                json_extract_scalar(response_elements, '$.groupId')) AS group_id,
       principal_arn,
       source_ip_address,
       error_code
FROM trailhouse.cloudtrail_events
WHERE event_date BETWEEN DATE '2024-06-01' AND DATE '2024-06-07'
  AND event_source = 'ec2.amazonaws.com'
  AND event_name IN ('AuthorizeSecurityGroupIngress', 'AuthorizeSecurityGroupEgress',
                     'RevokeSecurityGroupIngress', 'RevokeSecurityGroupEgress',
                     'ModifySecurityGroupRules', 'CreateSecurityGroup', 'DeleteSecurityGroup')
ORDER BY event_time;
