"""`platform serve` over real HTTP: the installed command runs as its own process on a free port, with a token.

One server for the module (start-up imports the network's libraries: seconds); tests that add bundles use
images no other test screens, so the order of the tests does not matter.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from vetohash.keys import public_key_of
from vetohash_platform.ingest import ingest_file
from vetohash_platform.store import Store
from vetohash_platform.trust import add_key

from .helpers import THRESHOLD, console_script, encode, hash_files, records

TOKEN = "s3cret-token-for-tests"
MAX_BYTES = 200_000


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass(frozen=True)
class Server:
    port: int
    db: Path
    folder: Path

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                token: str | None = TOKEN) -> Reply:
        headers = {} if content_type is None else {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def screen(self, image: Path) -> Reply:
        return self.request("POST", "/v1/screen", image.read_bytes(), "image/jpeg")

    def ingest(self, data: bytes, name: str) -> None:
        """`platform ingest` on the server's database, as an operator would run it beside the service."""
        path = self.folder / name
        path.write_bytes(data)
        with Store.open(self.db) as store:
            ingest_file(store, path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, make_bundle, key) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    db = folder / "platform.db"
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    with Store.open(db) as store:
        add_key(store, public_key_of(key).to_text(), "acme")
    (folder / "list.vhb").write_bytes(make_bundle(sequence=7))
    with Store.open(db) as store:
        ingest_file(store, folder / "list.vhb")
    port = free_port()
    env = dict(os.environ, HOME=str(folder), VETOHASH_DB=str(db))
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [*console_script(), "serve", "--port", str(port), "--token-file", str(token_file),
         "--max-bytes", str(MAX_BYTES)], env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(port, db, folder)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise AssertionError(f"platform serve exited: {(folder / 'server.log').read_text()}")
            try:
                if server.request("GET", "/healthz", token=None).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"platform serve never became ready: {(folder / 'server.log').read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def without_path(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "path"}


def test_a_banned_copy_matches_with_the_record_screen_json_prints_and_is_logged(server, platform, images):
    reply = server.screen(images["recompressed-1"])
    assert reply.status == 200, reply.body
    record = reply.json()
    assert record["verdict"] == "match" and record["path"] == "<upload>"
    assert record["results"][0]["nearest_id"] == "b-001" and record["results"][0]["distance"] < THRESHOLD
    cli = platform("--db", server.db, "screen", "--json", images["recompressed-1"])
    assert without_path(record) == without_path(records(cli.stdout)[0])
    logged = records(platform("--db", server.db, "log", "--json").stdout)
    assert record["sha256"] in {row["image_sha256"] for row in logged}


def test_an_unrelated_image_sent_as_multipart_is_clean(server, images):
    boundary = "vetohash-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"holiday.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + images["unrelated-0"].read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    reply = server.request("POST", "/v1/screen", body, f"multipart/form-data; boundary={boundary}")
    assert reply.status == 200, reply.body
    assert reply.json()["verdict"] == "clean" and reply.json()["path"] == "holiday.jpg"


def bomb() -> bytes:
    """A small PNG that claims 100 million pixels, twice what the decoder may allocate."""
    return encode(Image.new("1", (10_000, 10_000)), "PNG")


@pytest.mark.parametrize(("body", "content_type", "status", "problem"), [
    (b"", "image/jpeg", 400, "empty"),
    (b"this is a text file, not a picture\n", "image/jpeg", 422, "not_an_image"),
    (None, "image/png", 422, "decompression_bomb"),
    (b'{"image": "photo.jpg"}', "application/json", 415, "wrong_content_type"),
    (os.urandom(MAX_BYTES + 50_000), "image/jpeg", 413, "too_large"),
], ids=["empty", "not-an-image", "decompression-bomb", "wrong-content-type", "too-large"])
def test_bad_input_gets_a_4xx_json_error_naming_the_problem(server, body, content_type, status, problem):
    body = bomb() if body is None else body
    assert len(body) < MAX_BYTES or problem == "too_large"
    reply = server.request("POST", "/v1/screen", body, content_type)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["problem"] == problem and reply.json()["error"]
    assert server.request("GET", "/healthz").status == 200  # and the service is still up


def test_hash_and_bundles_answer_what_the_commands_print(server, platform, images):
    reply = server.request("POST", "/v1/hash", images["banned-3"].read_bytes(), "application/octet-stream")
    cli = records(platform("--db", server.db, "hash", "--json", images["banned-3"]).stdout)[0]
    assert reply.status == 200 and without_path(reply.json()) == without_path(cli)
    listed = server.request("GET", "/v1/bundles").json()
    assert listed == records(platform("--db", server.db, "bundles", "--json").stdout)


def test_a_bundle_ingested_while_it_runs_is_used_by_the_next_request(server, make_bundle, hasher, images):
    assert server.screen(images["unrelated-3"]).json()["verdict"] == "clean"
    banned = hash_files(hasher, [images["unrelated-3"]])
    server.ingest(make_bundle(list_name="late-list", hashes=banned, ids=("late-000",)), "late.vhb")
    record = server.screen(images["unrelated-3"]).json()
    assert record["verdict"] == "match"
    assert [r["nearest_id"] for r in record["results"] if r["match"]] == ["late-000"]


def test_an_expired_bundle_stops_matching_and_shows_in_healthz_metrics_and_warnings(server, make_bundle, hasher, images):
    expires = int(time.time()) + 3
    banned = hash_files(hasher, [images["unrelated-2"]])
    server.ingest(make_bundle(list_name="short-list", hashes=banned, ids=("short-000",), expires=expires),
                  "short.vhb")
    before = server.screen(images["unrelated-2"]).json()
    assert before["verdict"] == "match"
    assert not [w for w in before["warnings"] if "short-list" in w]
    time.sleep(max(0.0, expires - time.time()) + 0.2)
    record = server.screen(images["unrelated-2"]).json()
    assert record["verdict"] == "clean"
    assert "short-list" not in {r["list"] for r in record["results"]}
    # a clean verdict would hide that the list matched nothing: the record says so, as `platform screen` does
    assert [w for w in record["warnings"] if "short-list" in w and "is not used" in w]
    health = server.request("GET", "/healthz", token=None)
    assert health.status == 200
    assert [(b["list"], b["status"]) for b in health.json()["not_used"]] == [("short-list", "expired")]
    metrics = samples(server.request("GET", "/metrics").body.decode())
    assert metrics['vetohash_bundles{status="expired"}'] == 1
    key_id = record["results"][0]["key_id"]
    assert metrics[f'vetohash_bundle_expiry_timestamp_seconds{{authority="Test Authority",key_id="{key_id}",'
                   'list="short-list",status="expired"}'] == expires


def samples(text: str) -> dict[str, float]:
    """Prometheus text format -> {name{labels}: value}."""
    return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_metrics_count_requests_verdicts_and_latency(server, images):
    before = samples(server.request("GET", "/metrics").body.decode())
    server.screen(images["unrelated-1"])
    after = samples(server.request("GET", "/metrics").body.decode())

    def grew(name: str) -> float:
        return after[name] - before.get(name, 0.0)

    assert grew('vetohash_requests_total{code="200",route="/v1/screen"}') == 1
    assert grew('vetohash_verdicts_total{verdict="clean"}') == 1
    assert grew('vetohash_request_seconds_count{route="/v1/screen"}') == 1
    assert grew('vetohash_request_seconds_bucket{le="+Inf",route="/v1/screen"}') == 1
    assert after["vetohash_ready"] == 1


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN[:-1]], ids=["none", "wrong", "prefix"])
def test_without_the_right_token_requests_are_refused(server, images, token):
    reply = server.request("POST", "/v1/screen", images["banned-0"].read_bytes(), "image/jpeg", token=token)
    assert reply.status == 401 and reply.json()["problem"] == "unauthorized"
    assert reply.headers["www-authenticate"] == "Bearer"
    assert server.request("GET", "/v1/bundles", token=token).status == 401
    assert server.request("GET", "/healthz", token=token).status == 200  # load balancers probe without one


def test_a_token_file_others_can_read_is_refused_before_serving(platform, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    result = platform("serve", "--token-file", token_file)
    assert result.code == 2 and "readable by others" in result.stderr and "chmod 600" in result.stderr




def test_a_token_file_that_is_no_regular_file_is_refused_at_once(platform, tmp_path):
    """A FIFO would block a plain read forever: the bounded read refuses it before reading a byte."""
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    result = platform("serve", "--token-file", fifo)
    assert result.code == 2 and f"{fifo}: a FIFO, not a regular file" in result.stderr
