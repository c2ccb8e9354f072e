-- trailhouse's events table in Trino, through the Delta Lake connector (catalog file:
-- sql/trino/delta.properties).
--
-- Replace before running:
--   delta                       the catalog: the name of the properties file in etc/catalog/
--                               (delta.properties -> delta)
--   cloudtrail                  the schema to register the table in (any name)
--   s3://trailhouse-warehouse   TRAILHOUSE_WAREHOUSE (as set in docker-compose.yaml for the
--                               demo's MinIO store): the table is $TRAILHOUSE_WAREHOUSE/cloudtrail_events
--   the dates and the ARN in the example queries
--
-- register_table only records the location: Trino takes the columns, their types and the
-- partition column (event_date) from the table's Delta log, and each query reads its latest
-- commit. It needs delta.register-table-procedure.enabled=true in the catalog. Trino only
-- reads here; trailhouse stays the table's one writer. Columns: include/trailhouse/warehouse/schema.py.
--
-- Filter every query on event_date (the UTC day of event_time): it is the partition column,
-- so Trino reads only those days' files. current_date follows the session's time zone: run
-- with SET TIME ZONE 'UTC' (or the client's --timezone) to match the partitions' days.

CREATE SCHEMA IF NOT EXISTS delta.cloudtrail;

CALL delta.system.register_table(
    schema_name => 'cloudtrail',
    table_name => 'cloudtrail_events',
    table_location => 's3://trailhouse-warehouse/cloudtrail_events'
);


-- Example 1: failed calls by account and error over the last 7 days.
SELECT account_id,
       error_code,
       count(*)                      AS errors,
       count(DISTINCT principal_arn) AS principals,
       max(event_time)               AS last_seen
FROM delta.cloudtrail.cloudtrail_events
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
FROM delta.cloudtrail.cloudtrail_events
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
FROM delta.cloudtrail.cloudtrail_events
WHERE event_date BETWEEN DATE '2024-06-01' AND DATE '2024-06-07'
  AND event_source = 'ec2.amazonaws.com'
  AND event_name IN ('AuthorizeSecurityGroupIngress', 'AuthorizeSecurityGroupEgress',
                     'RevokeSecurityGroupIngress', 'RevokeSecurityGroupEgress',
                     'ModifySecurityGroupRules', 'CreateSecurityGroup', 'DeleteSecurityGroup')
ORDER BY event_time;
