"""MITRE ATT&CK (Enterprise) ids the rules may cite: the tactics in matrix order and the
techniques of the cloud (IaaS, SaaS, Identity Provider) platforms, with the tactics each
belongs to. Shipped as data so that validation, `trailhouse rules coverage` and the
Navigator layer work offline. Names follow ATT&CK v16.
"""

from __future__ import annotations

# (id, shortname, name), in the order of the Enterprise matrix.
TACTICS: tuple[tuple[str, str, str], ...] = (
    ("TA0043", "reconnaissance", "Reconnaissance"),
    ("TA0042", "resource-development", "Resource Development"),
    ("TA0001", "initial-access", "Initial Access"),
    ("TA0002", "execution", "Execution"),
    ("TA0003", "persistence", "Persistence"),
    ("TA0004", "privilege-escalation", "Privilege Escalation"),
    ("TA0005", "defense-evasion", "Defense Evasion"),
    ("TA0006", "credential-access", "Credential Access"),
    ("TA0007", "discovery", "Discovery"),
    ("TA0008", "lateral-movement", "Lateral Movement"),
    ("TA0009", "collection", "Collection"),
    ("TA0011", "command-and-control", "Command and Control"),
    ("TA0010", "exfiltration", "Exfiltration"),
    ("TA0040", "impact", "Impact"),
)
TACTIC_BY_SHORTNAME = {short: (tid, name) for tid, short, name in TACTICS}

_VALID = ("initial-access", "persistence", "privilege-escalation", "defense-evasion")
_MODIFY_AUTH = ("credential-access", "defense-evasion", "persistence")

# id -> (name, tactics). A sub-technique's name is its own part only ("Cloud Accounts").
TECHNIQUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "T1595": ("Active Scanning", ("reconnaissance",)),
    "T1589": ("Gather Victim Identity Information", ("reconnaissance",)),
    "T1583": ("Acquire Infrastructure", ("resource-development",)),
    "T1583.007": ("Serverless", ("resource-development",)),
    "T1585": ("Establish Accounts", ("resource-development",)),
    "T1585.003": ("Cloud Accounts", ("resource-development",)),
    "T1586": ("Compromise Accounts", ("resource-development",)),
    "T1586.003": ("Cloud Accounts", ("resource-development",)),
    "T1608": ("Stage Capabilities", ("resource-development",)),
    "T1078": ("Valid Accounts", _VALID),
    "T1078.001": ("Default Accounts", _VALID),
    "T1078.004": ("Cloud Accounts", _VALID),
    "T1190": ("Exploit Public-Facing Application", ("initial-access",)),
    "T1199": ("Trusted Relationship", ("initial-access",)),
    "T1059": ("Command and Scripting Interpreter", ("execution",)),
    "T1059.009": ("Cloud API", ("execution",)),
    "T1072": ("Software Deployment Tools", ("execution", "lateral-movement")),
    "T1204": ("User Execution", ("execution",)),
    "T1204.003": ("Malicious Image", ("execution",)),
    "T1609": ("Container Administration Command", ("execution",)),
    "T1610": ("Deploy Container", ("defense-evasion", "execution")),
    "T1648": ("Serverless Execution", ("execution",)),
    "T1651": ("Cloud Administration Command", ("execution",)),
    "T1098": ("Account Manipulation", ("persistence", "privilege-escalation")),
    "T1098.001": ("Additional Cloud Credentials", ("persistence", "privilege-escalation")),
    "T1098.003": ("Additional Cloud Roles", ("persistence", "privilege-escalation")),
    "T1098.004": ("SSH Authorized Keys", ("persistence", "privilege-escalation")),
    "T1098.005": ("Device Registration", ("persistence", "privilege-escalation")),
    "T1136": ("Create Account", ("persistence",)),
    "T1136.003": ("Cloud Account", ("persistence",)),
    "T1525": ("Implant Internal Image", ("persistence",)),
    "T1546": ("Event Triggered Execution", ("privilege-escalation", "persistence")),
    "T1556": ("Modify Authentication Process", _MODIFY_AUTH),
    "T1556.006": ("Multi-Factor Authentication", _MODIFY_AUTH),
    "T1556.007": ("Hybrid Identity", _MODIFY_AUTH),
    "T1556.009": ("Conditional Access Policies", ("defense-evasion", "persistence")),
    "T1484": ("Domain or Tenant Policy Modification", ("defense-evasion", "privilege-escalation")),
    "T1484.002": ("Trust Modification", ("defense-evasion", "privilege-escalation")),
    "T1548": ("Abuse Elevation Control Mechanism", ("privilege-escalation", "defense-evasion")),
    "T1548.005": ("Temporary Elevated Cloud Access", ("privilege-escalation", "defense-evasion")),
    "T1666": ("Modify Cloud Resource Hierarchy", ("defense-evasion",)),
    "T1070": ("Indicator Removal", ("defense-evasion",)),
    "T1535": ("Unused/Unsupported Cloud Regions", ("defense-evasion",)),
    "T1550": ("Use Alternate Authentication Material", ("defense-evasion", "lateral-movement")),
    "T1550.001": ("Application Access Token", ("defense-evasion", "lateral-movement")),
    "T1562": ("Impair Defenses", ("defense-evasion",)),
    "T1562.001": ("Disable or Modify Tools", ("defense-evasion",)),
    "T1562.007": ("Disable or Modify Cloud Firewall", ("defense-evasion",)),
    "T1562.008": ("Disable or Modify Cloud Logs", ("defense-evasion",)),
    "T1564": ("Hide Artifacts", ("defense-evasion",)),
    "T1564.008": ("Email Hiding Rules", ("defense-evasion",)),
    "T1578": ("Modify Cloud Compute Infrastructure", ("defense-evasion",)),
    "T1578.001": ("Create Snapshot", ("defense-evasion",)),
    "T1578.002": ("Create Cloud Instance", ("defense-evasion",)),
    "T1578.003": ("Delete Cloud Instance", ("defense-evasion",)),
    "T1578.004": ("Revert Cloud Instance", ("defense-evasion",)),
    "T1578.005": ("Modify Cloud Compute Configurations", ("defense-evasion",)),
    "T1110": ("Brute Force", ("credential-access",)),
    "T1110.001": ("Password Guessing", ("credential-access",)),
    "T1110.003": ("Password Spraying", ("credential-access",)),
    "T1110.004": ("Credential Stuffing", ("credential-access",)),
    "T1528": ("Steal Application Access Token", ("credential-access",)),
    "T1552": ("Unsecured Credentials", ("credential-access",)),
    "T1552.001": ("Credentials In Files", ("credential-access",)),
    "T1552.005": ("Cloud Instance Metadata API", ("credential-access",)),
    "T1555": ("Credentials from Password Stores", ("credential-access",)),
    "T1555.006": ("Cloud Secrets Management Stores", ("credential-access",)),
    "T1606": ("Forge Web Credentials", ("credential-access",)),
    "T1606.002": ("SAML Tokens", ("credential-access",)),
    "T1621": ("Multi-Factor Authentication Request Generation", ("credential-access",)),
    "T1040": ("Network Sniffing", ("credential-access", "discovery")),
    "T1087": ("Account Discovery", ("discovery",)),
    "T1087.004": ("Cloud Account", ("discovery",)),
    "T1069": ("Permission Groups Discovery", ("discovery",)),
    "T1069.003": ("Cloud Groups", ("discovery",)),
    "T1201": ("Password Policy Discovery", ("discovery",)),
    "T1526": ("Cloud Service Discovery", ("discovery",)),
    "T1538": ("Cloud Service Dashboard", ("discovery",)),
    "T1580": ("Cloud Infrastructure Discovery", ("discovery",)),
    "T1613": ("Container and Resource Discovery", ("discovery",)),
    "T1619": ("Cloud Storage Object Discovery", ("discovery",)),
    "T1654": ("Log Enumeration", ("discovery",)),
    "T1021": ("Remote Services", ("lateral-movement",)),
    "T1021.004": ("SSH", ("lateral-movement",)),
    "T1021.007": ("Cloud Services", ("lateral-movement",)),
    "T1021.008": ("Direct Cloud VM Connections", ("lateral-movement",)),
    "T1534": ("Internal Spearphishing", ("lateral-movement",)),
    "T1074": ("Data Staged", ("collection",)),
    "T1074.002": ("Remote Data Staging", ("collection",)),
    "T1114": ("Email Collection", ("collection",)),
    "T1114.003": ("Email Forwarding Rule", ("collection",)),
    "T1119": ("Automated Collection", ("collection",)),
    "T1213": ("Data from Information Repositories", ("collection",)),
    "T1530": ("Data from Cloud Storage", ("collection",)),
    "T1090": ("Proxy", ("command-and-control",)),
    "T1090.003": ("Multi-hop Proxy", ("command-and-control",)),
    "T1102": ("Web Service", ("command-and-control",)),
    "T1572": ("Protocol Tunneling", ("command-and-control",)),
    "T1020": ("Automated Exfiltration", ("exfiltration",)),
    "T1020.001": ("Traffic Duplication", ("exfiltration",)),
    "T1048": ("Exfiltration Over Alternative Protocol", ("exfiltration",)),
    "T1537": ("Transfer Data to Cloud Account", ("exfiltration",)),
    "T1567": ("Exfiltration Over Web Service", ("exfiltration",)),
    "T1485": ("Data Destruction", ("impact",)),
    "T1485.001": ("Lifecycle-Triggered Deletion", ("impact",)),
    "T1486": ("Data Encrypted for Impact", ("impact",)),
    "T1489": ("Service Stop", ("impact",)),
    "T1490": ("Inhibit System Recovery", ("impact",)),
    "T1496": ("Resource Hijacking", ("impact",)),
    "T1496.001": ("Compute Hijacking", ("impact",)),
    "T1496.004": ("Cloud Service Hijacking", ("impact",)),
    "T1531": ("Account Access Removal", ("impact",)),
    "T1565": ("Data Manipulation", ("impact",)),
    "T1657": ("Financial Theft", ("impact",)),
}


def technique_name(technique: str) -> str:
    """'T1078.004' -> 'Valid Accounts: Cloud Accounts'."""
    name = TECHNIQUES[technique][0]
    parent = technique.split(".")[0]
    return f"{TECHNIQUES[parent][0]}: {name}" if parent != technique else name


def check(tactic: str, technique: str) -> None:
    """Raise ValueError unless `technique` is known and belongs to `tactic` (a shortname)."""
    if tactic not in TACTIC_BY_SHORTNAME:
        raise ValueError(f"unknown ATT&CK tactic {tactic!r}; use one of: {', '.join(TACTIC_BY_SHORTNAME)}")
    if technique not in TECHNIQUES:
        raise ValueError(f"unknown ATT&CK technique {technique!r} (include/trailhouse/attack.py lists those known)")
    if tactic not in TECHNIQUES[technique][1]:
        raise ValueError(f"{technique} is not a technique of {tactic}; it belongs to "
                         f"{', '.join(TECHNIQUES[technique][1])}")
