"""`platform trust add/list/remove`: which authority keys are accepted."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vetohash.keys import public_key_of

from .helpers import file_digest


def test_add_from_a_pub_file_then_list_shows_id_and_name(platform, pubkey_file: Path, key: Ed25519PrivateKey):
    key_id = public_key_of(key).key_id
    added = platform("trust", "add", pubkey_file, "--name", "acme")
    assert added.code == 0, added.stderr
    assert added.stdout == f"trusted key {key_id} as 'acme'\n"
    listed = platform("trust", "list", "--json")
    [record] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert record["key_id"] == key_id and record["name"] == "acme"
    assert record["public_key"] == public_key_of(key).to_text()
    assert key_id in platform("trust", "list").stdout


def test_add_from_pasted_text_without_a_name(platform, other_key: Ed25519PrivateKey):
    text = public_key_of(other_key).to_text()
    assert platform("trust", "add", text).code == 0
    [record] = [json.loads(line) for line in platform("trust", "list", "--json").stdout.splitlines()]
    assert record["key_id"] == public_key_of(other_key).key_id and record["name"] is None


def test_adding_the_same_key_again_changes_nothing(platform, pubkey_file: Path, db: Path):
    platform("trust", "add", pubkey_file, "--name", "acme")
    before = file_digest(db)
    again = platform("trust", "add", pubkey_file)
    assert again.code == 0 and "already trusted" in again.stdout and "nothing changed" in again.stdout
    assert file_digest(db) == before


def test_adding_a_known_key_with_a_new_name_renames_it(platform, pubkey_file: Path):
    platform("trust", "add", pubkey_file, "--name", "acme")
    assert "now named 'acme-2'" in platform("trust", "add", pubkey_file, "--name", "acme-2").stdout
    [record] = [json.loads(line) for line in platform("trust", "list", "--json").stdout.splitlines()]
    assert record["name"] == "acme-2"


def test_a_name_used_by_another_key_is_refused(platform, pubkey_file: Path, other_key: Ed25519PrivateKey, db):
    platform("trust", "add", pubkey_file, "--name", "acme")
    before = file_digest(db)
    clash = platform("trust", "add", public_key_of(other_key).to_text(), "--name", "acme")
    assert clash.code == 2
    assert clash.stderr.startswith("error: the name 'acme' is already used by key")
    assert file_digest(db) == before


def test_remove_by_name_and_by_key_id(platform, pubkey_file: Path, key, other_key):
    platform("trust", "add", pubkey_file, "--name", "acme")
    platform("trust", "add", public_key_of(other_key).to_text())
    assert platform("trust", "remove", "acme").code == 0
    assert platform("trust", "remove", public_key_of(other_key).key_id).code == 0
    assert platform("trust", "list", "--json").stdout == ""


def test_removing_an_unknown_key_fails_in_one_line(platform):
    gone = platform("trust", "remove", "nobody")
    assert gone.code == 2
    assert gone.stderr.count("\n") == 1 and gone.stderr.startswith("error: no trusted key has the id or name")


def test_malformed_keys_and_missing_files_are_one_line_errors(platform, tmp_path: Path):
    for bad in ("vetohash-ed25519:tooshort", str(tmp_path / "missing.pub")):
        result = platform("trust", "add", bad)
        assert result.code == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr


def test_a_name_that_looks_like_a_key_id_is_refused(platform, pubkey_file: Path):
    result = platform("trust", "add", pubkey_file, "--name", "0123456789abcdef")
    assert result.code == 2 and "looks like a key id" in result.stderr
