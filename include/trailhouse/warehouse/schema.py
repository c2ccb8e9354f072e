"""The warehouse's events table, column by column: one list that code, DDL and docs share."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

STR, BOOL, TIME, MFA, JSON = "str", "bool", "time", "mfa", "json"


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str
    # Where the value comes from in a CloudTrail record, and how it is typed; None for
    # columns that trailhouse derives (partition, lineage).
    path: tuple[str, ...] | None = None
    kind: str | None = None


UTC_TS = pa.timestamp("us", tz="UTC")

COLUMNS: tuple[Column, ...] = (
    Column("event_id", pa.string(), "eventID; the table's key. Records without one get `sha256:<hex>` of their content.", ("eventID",), STR),
    Column("event_time", UTC_TS, "eventTime as a UTC timestamp (null when absent or unparseable; the original text is then in extra_fields).", ("eventTime",), TIME),
    Column("event_date", pa.date32(), "Partition: the UTC date of event_time (the delivery folder's date when eventTime is missing)."),
    Column("account_id", pa.string(), "The account the event belongs to: recipientAccountId, else the account folder of the file."),
    Column("region", pa.string(), "awsRegion.", ("awsRegion",), STR),
    Column("event_source", pa.string(), "eventSource, e.g. `ec2.amazonaws.com`.", ("eventSource",), STR),
    Column("event_name", pa.string(), "eventName, e.g. `AuthorizeSecurityGroupIngress` (Lambda's carry API-version suffixes).", ("eventName",), STR),
    Column("event_type", pa.string(), "eventType: AwsApiCall, AwsConsoleSignIn, AwsServiceEvent, AwsCloudTrailInsight, ...", ("eventType",), STR),
    Column("event_category", pa.string(), "eventCategory: Management, Data, Insight, NetworkActivity.", ("eventCategory",), STR),
    Column("event_version", pa.string(), "eventVersion of the record format.", ("eventVersion",), STR),
    Column("read_only", pa.bool_(), "readOnly.", ("readOnly",), BOOL),
    Column("management_event", pa.bool_(), "managementEvent.", ("managementEvent",), BOOL),
    Column("error_code", pa.string(), "errorCode (null when the call succeeded), e.g. `AccessDenied`.", ("errorCode",), STR),
    Column("error_message", pa.string(), "errorMessage.", ("errorMessage",), STR),
    Column("source_ip_address", pa.string(), "sourceIPAddress: an IP, or a service name such as `AWS Internal`.", ("sourceIPAddress",), STR),
    Column("user_agent", pa.string(), "userAgent.", ("userAgent",), STR),
    Column("request_id", pa.string(), "requestID.", ("requestID",), STR),
    Column("shared_event_id", pa.string(), "sharedEventID (same value in every account an event was delivered to).", ("sharedEventID",), STR),
    Column("recipient_account_id", pa.string(), "recipientAccountId as delivered.", ("recipientAccountId",), STR),
    Column("vpc_endpoint_id", pa.string(), "vpcEndpointId.", ("vpcEndpointId",), STR),
    Column("api_version", pa.string(), "apiVersion.", ("apiVersion",), STR),
    Column("user_type", pa.string(), "userIdentity.type: Root, IAMUser, AssumedRole, FederatedUser, AWSService, ...", ("userIdentity", "type"), STR),
    Column("principal_id", pa.string(), "userIdentity.principalId.", ("userIdentity", "principalId"), STR),
    Column("principal_arn", pa.string(), "userIdentity.arn.", ("userIdentity", "arn"), STR),
    Column("principal_account_id", pa.string(), "userIdentity.accountId: the account the caller belongs to.", ("userIdentity", "accountId"), STR),
    Column("access_key_id", pa.string(), "userIdentity.accessKeyId.", ("userIdentity", "accessKeyId"), STR),
    Column("user_name", pa.string(), "userIdentity.userName.", ("userIdentity", "userName"), STR),
    Column("invoked_by", pa.string(), "userIdentity.invokedBy: the service that made the call for the principal.", ("userIdentity", "invokedBy"), STR),
    Column("session_issuer_type", pa.string(), "userIdentity.sessionContext.sessionIssuer.type.", ("userIdentity", "sessionContext", "sessionIssuer", "type"), STR),
    Column("session_issuer_principal_id", pa.string(), "userIdentity.sessionContext.sessionIssuer.principalId.", ("userIdentity", "sessionContext", "sessionIssuer", "principalId"), STR),
    Column("session_issuer_arn", pa.string(), "userIdentity.sessionContext.sessionIssuer.arn: the role behind an assumed-role session.", ("userIdentity", "sessionContext", "sessionIssuer", "arn"), STR),
    Column("session_issuer_account_id", pa.string(), "userIdentity.sessionContext.sessionIssuer.accountId.", ("userIdentity", "sessionContext", "sessionIssuer", "accountId"), STR),
    Column("session_issuer_user_name", pa.string(), "userIdentity.sessionContext.sessionIssuer.userName.", ("userIdentity", "sessionContext", "sessionIssuer", "userName"), STR),
    Column("session_mfa_authenticated", pa.bool_(), "userIdentity.sessionContext.attributes.mfaAuthenticated (`\"true\"`/`\"false\"` in the record).", ("userIdentity", "sessionContext", "attributes", "mfaAuthenticated"), MFA),
    Column("session_creation_date", UTC_TS, "userIdentity.sessionContext.attributes.creationDate.", ("userIdentity", "sessionContext", "attributes", "creationDate"), TIME),
    Column("source_identity", pa.string(), "userIdentity.sessionContext.sourceIdentity.", ("userIdentity", "sessionContext", "sourceIdentity"), STR),
    Column("tls_version", pa.string(), "tlsDetails.tlsVersion.", ("tlsDetails", "tlsVersion"), STR),
    Column("tls_cipher_suite", pa.string(), "tlsDetails.cipherSuite.", ("tlsDetails", "cipherSuite"), STR),
    Column("tls_client_provided_host_header", pa.string(), "tlsDetails.clientProvidedHostHeader.", ("tlsDetails", "clientProvidedHostHeader"), STR),
    Column("resources", pa.string(), "resources, as JSON text (a list of {ARN, accountId, type}).", ("resources",), JSON),
    Column("request_parameters", pa.string(), "requestParameters, as JSON text exactly as delivered (its shape drifts between events).", ("requestParameters",), JSON),
    Column("response_elements", pa.string(), "responseElements, as JSON text exactly as delivered.", ("responseElements",), JSON),
    Column("additional_event_data", pa.string(), "additionalEventData, as JSON text exactly as delivered.", ("additionalEventData",), JSON),
    Column("service_event_details", pa.string(), "serviceEventDetails, as JSON text exactly as delivered.", ("serviceEventDetails",), JSON),
    Column("extra_fields", pa.string(), "Every part of the record no column above holds exactly (new fields, nulls, values of an unexpected type, emptied objects), as a JSON object; the columns plus this rebuild the original record."),
    Column("mav", pa.string(), "Lineage: the multi-account view that loaded the event."),
    Column("source_key", pa.string(), "Lineage: the bucket key of the delivery file the event came from (the first one, for duplicates)."),
    Column("ingested_at", UTC_TS, "Lineage: when trailhouse loaded the event."),
)

ARROW_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in COLUMNS])
PARTITION_BY = ("event_date",)
BY_NAME = {c.name: c for c in COLUMNS}
