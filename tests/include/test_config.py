"""MAV YAML and the IAM console's credentials CSV: accepted forms and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from trailhouse.config import ConfigError, Mav, load_mav, load_mav_file, read_credentials_csv, save_mav

KEY_ID, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    "text",
    [
        # Access keys page: "Download .csv file" (with the BOM Excel-friendly exports carry).
        f"\ufeffAccess key ID,Secret access key\n{KEY_ID},{SECRET}\n",
        # Create user with console access and an access key.
        "User name,Password,Access key ID,Secret access key,Console login link\n"
        f"reader,Pa55!,{KEY_ID},{SECRET},https://123456789012.signin.aws.amazon.com/console\n",
    ],
)
def test_credentials_csv_forms(tmp_path: Path, text: str) -> None:
    path = tmp_path / "creds.csv"
    path.write_text(text, encoding="utf-8")
    assert read_credentials_csv(path) == (KEY_ID, SECRET)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "no rows"),
        ("User name,Password\nreader,x\n", "Access key ID"),
        (f"Access key ID,Secret access key\nnot-a-key,{SECRET}\n", "does not hold an AWS access key id"),
    ],
)
def test_credentials_csv_refusals_name_the_fix_and_no_secret(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "creds.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle) as info:
        read_credentials_csv(path)
    assert SECRET not in str(info.value)


def test_yaml_round_trip_holds_no_secret_and_keeps_leading_zero_accounts(tmp_path: Path) -> None:
    mav = Mav(name="prod", bucket="b", prefix="/org/", accounts=["012345678901"])
    path = save_mav(tmp_path, mav)
    text = path.read_text()
    assert "012345678901" in text and "secret" not in text.lower().replace("no secrets", "")
    loaded = load_mav(tmp_path, "prod")
    assert loaded == mav
    assert loaded.prefix == "org/" and loaded.connection_id == "trailhouse_prod"


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("bucket: b\npath: /x\n", "exactly one of `bucket`"),
        ("bucket: b\naccounts: [12345]\n", "12 digits"),
        ("bucket: b\nlookback_hours: 0\n", "lookback_hours"),
        ("bucket: b\nsecret_key: x\n", "secret_key"),
        ("bucket: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("path: /x\nqueue_url: https://sqs.us-east-1.amazonaws.com/111122223333/q\n", "`queue_url` needs `bucket`"),
        ("bucket: b\nqueue_url: arn:aws:sqs:us-east-1:111122223333:q\n", "not an SQS queue URL; copy it"),
    ],
)
def test_malformed_mav_file_is_named_with_the_problem(tmp_path: Path, yaml_text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=needle) as info:
        load_mav_file(path)
    assert "bad.yaml" in str(info.value)


def test_unknown_mav_lists_the_known_ones(tmp_path: Path) -> None:
    save_mav(tmp_path, Mav(name="alpha", path="/x"))
    with pytest.raises(ConfigError, match="known: alpha"):
        load_mav(tmp_path, "nope")
