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


# Every shape of a credentials file gone wrong that people hand over: the key pair must never
# be echoed back (upper or lower case) whatever the error says.
_BROKEN_CSV_SHAPES = {
    "no header row": f"{KEY_ID},{SECRET}\n",
    "no header, several rows": f"{KEY_ID},{SECRET}\n{KEY_ID},{SECRET}\n",
    "header after the key": f"{KEY_ID},{SECRET}\nAccess key ID,Secret access key\n",
    "columns swapped without header": f"{SECRET},{KEY_ID}\n",
    "semicolons (a spreadsheet's export)": f"Access key ID;Secret access key\n{KEY_ID};{SECRET}\n",
    "tabs": f"Access key ID\tSecret access key\n{KEY_ID}\t{SECRET}\n",
    "secret column missing": f"Access key ID,Password\n{KEY_ID},{SECRET}\n",
    "key id column missing": f"User name,Secret access key\nreader,{SECRET}\n",
    "more values than the header": f"Access key ID\n{KEY_ID},{SECRET}\n",
    "secret empty": f"Access key ID,Secret access key\n{KEY_ID},\n",
    "key id lower-cased": f"Access key ID,Secret access key\n{KEY_ID.lower()},{SECRET}\n",
    "NUL byte": f"Access key ID,Secret access key\n{KEY_ID},{SECRET}\0\n",
    "only the secret": f"{SECRET}\n",
    "header only": "Access key ID,Secret access key\n",
    "quoted header-less": f'"{KEY_ID}","{SECRET}"\n',
}


@pytest.mark.parametrize("shape", sorted(_BROKEN_CSV_SHAPES))
def test_mav_add_never_prints_the_key_pair_of_a_broken_csv(th_home: Path, tmp_path: Path, shape: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from trailhouse.cli import main as cli

    path = tmp_path / "creds.csv"
    path.write_text(_BROKEN_CSV_SHAPES[shape])
    status = cli.main(["mav", "add", "prod", "--bucket", "b", "--credentials-csv", str(path)])
    out = capsys.readouterr()
    said = (out.out + out.err).lower()
    assert status == 2 and "error:" in said and "iam console" in said
    for secret_part in (KEY_ID, SECRET, SECRET[:16], KEY_ID[4:]):
        assert secret_part.lower() not in said, shape
    assert not (th_home / "mavs" / "prod.yaml").exists()


@pytest.mark.parametrize("url", ["http://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@127.0.0.1:9000",
                                 "https://s3.example.com/?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"])
def test_endpoint_url_with_credentials_is_refused_and_never_saved(th_home: Path, tmp_path: Path, url: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from trailhouse.cli import main as cli

    path = tmp_path / "creds.csv"
    path.write_text(f"Access key ID,Secret access key\n{KEY_ID},{SECRET}\n")
    status = cli.main(["mav", "add", "prod", "--bucket", "b", "--credentials-csv", str(path), "--endpoint-url", url])
    out = capsys.readouterr()
    assert status == 2 and "endpoint_url" in out.err and "--credentials-csv" in out.err or "query" in out.err
    assert "AKIAIOSFODNN7EXAMPLE" not in out.out + out.err and "wJalr" not in out.out + out.err
    assert not (th_home / "mavs" / "prod.yaml").exists()
    # and a MAV file edited by hand to hold one does not load
    (tmp_path / "hand.yaml").write_text(f"bucket: b\nendpoint_url: '{url}'\n")
    with pytest.raises(ConfigError, match="endpoint_url") as info:
        load_mav_file(tmp_path / "hand.yaml")
    assert "AKIAIOSFODNN7EXAMPLE" not in str(info.value)
