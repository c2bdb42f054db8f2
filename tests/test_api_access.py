"""Serving safely: API keys and roles, read-only serving, Host and Origin checks, the upload limit
counted on the bytes received, no server paths in answers, and server errors logged with their
exception. The rules alone (indexer.access), then a real uvicorn server on a loopback port."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from indexer.access import AccessConfigError, AccessPolicy, check_request, read_key_file
from tests.test_api import REQUEST_TIMEOUT, SERVERS, add, assert_error, consumer_photos, count, search, serving

WRITE_KEY = "w" * 20 + "-write-key"
READ_KEY = "r" * 20 + "-read-key"


def headers(host="127.0.0.1:8000", origin=None, key=None) -> dict[bytes, bytes]:
    found = {b"host": host.encode()}
    if origin:
        found[b"origin"] = origin.encode()
    if key:
        found[b"authorization"] = f"Bearer {key}".encode()
    return found


def refused(policy, method, path, **kwargs):
    refusal = check_request(policy, method, path, headers(**kwargs))
    return None if refusal is None else (refusal.status, refusal.code)


# ----------------------------------------------------------------------------- the rules


def test_a_loopback_server_without_keys_lets_this_machine_write_and_nobody_else_in():
    policy = AccessPolicy.from_options("127.0.0.1", environ={})
    assert refused(policy, "POST", "/items") is None and refused(policy, "DELETE", "/items/a") is None
    assert refused(policy, "POST", "/search", host="localhost:8000") is None and refused(policy, "GET", "/info", host="[::1]:8000") is None
    # a page of another site, reached through its own DNS name rebound to 127.0.0.1, or posting cross-site
    assert refused(policy, "DELETE", "/items/a", host="evil.example") == (403, "forbidden_host")
    assert refused(policy, "GET", "/info", host="evil.example:8000") == (403, "forbidden_host")
    assert refused(policy, "POST", "/items", origin="http://evil.example") == (403, "forbidden_origin")
    assert refused(policy, "POST", "/items", origin="http://127.0.0.1:8000") is None  # this server's own /docs page
    assert refused(policy, "POST", "/search", origin="http://evil.example") is None  # a search changes nothing
    shop = AccessPolicy.from_options("127.0.0.1", cors_origins=["https://shop.example/"], environ={})
    assert refused(shop, "POST", "/items", origin="https://shop.example") is None
    assert refused(shop, "POST", "/items", origin="https://other.example") == (403, "forbidden_origin")


def test_beyond_the_loopback_writes_need_a_key_and_the_right_role():
    open_ = AccessPolicy.from_options("0.0.0.0", environ={})
    assert refused(open_, "POST", "/items") == (403, "writes_disabled")
    assert refused(open_, "POST", "/search", host="10.1.2.3:8000") is None  # a wildcard address cannot know its names ...
    assert refused(open_, "POST", "/items", host="10.1.2.3:8000") == (403, "forbidden_host")  # ... but writes keep to them
    named = AccessPolicy.from_options("0.0.0.0", allowed_hosts=["search.shop.example"], environ={"INDEXER_API_KEY": WRITE_KEY})
    assert refused(named, "POST", "/search", host="10.1.2.3:8000") == (403, "forbidden_host")
    assert refused(named, "POST", "/items", host="search.shop.example", key=WRITE_KEY) is None

    keyed = AccessPolicy(keys={WRITE_KEY: "write", READ_KEY: "read"}, loopback_only=False)
    assert refused(keyed, "POST", "/items") == (401, "unauthorized")
    assert refused(keyed, "POST", "/items", key="x" * 30) == (401, "unauthorized")
    assert refused(keyed, "POST", "/items", key=READ_KEY) == (403, "forbidden")
    assert refused(keyed, "DELETE", "/items/a", key=WRITE_KEY) is None
    assert refused(keyed, "POST", "/search") is None and refused(keyed, "GET", "/items/a") is None
    x_api_key = check_request(keyed, "POST", "/items", {b"host": b"localhost", b"x-api-key": WRITE_KEY.encode()})
    assert x_api_key is None

    private = AccessPolicy(keys={WRITE_KEY: "write", READ_KEY: "read"}, keys_for_reads=True)
    assert refused(private, "POST", "/search") == (401, "unauthorized") and refused(private, "GET", "/info") == (401, "unauthorized")
    assert refused(private, "POST", "/search", key=READ_KEY) is None and refused(private, "GET", "/info", key=WRITE_KEY) is None
    assert refused(private, "GET", "/health") is None and refused(private, "GET", "/docs") is None

    read_only = AccessPolicy(keys={WRITE_KEY: "write"}, read_only=True)
    assert refused(read_only, "POST", "/items", key=WRITE_KEY) == (403, "read_only")
    assert refused(read_only, "POST", "/search") is None


def test_key_files_are_read_with_roles_and_bad_ones_are_named(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"# the shop's keys\n{WRITE_KEY}\nread {READ_KEY}  # the storefront\n\n")
    keys.chmod(0o600)
    assert read_key_file(keys) == {WRITE_KEY: "write", READ_KEY: "read"}
    policy = AccessPolicy.from_options("127.0.0.1", key_file=str(keys), environ={"INDEXER_API_KEY": "e" * 32})
    assert policy.keys == {WRITE_KEY: "write", READ_KEY: "read", "e" * 32: "write"}
    keys.write_text("admin " + WRITE_KEY + "\n")
    with pytest.raises(AccessConfigError, match=r"keys, line 1: expected"):
        read_key_file(keys)
    keys.write_text("short\n")
    with pytest.raises(AccessConfigError, match=r"line 1: an API key must be at least 16"):
        read_key_file(keys)
    keys.write_text("# nothing\n")
    with pytest.raises(AccessConfigError, match="holds no key"):
        read_key_file(keys)
    with pytest.raises(AccessConfigError, match="cannot be read"):
        read_key_file(tmp_path / "missing")
    with pytest.raises(AccessConfigError, match="--keys-for-reads needs keys"):
        AccessPolicy.from_options("127.0.0.1", keys_for_reads=True, environ={})


# ----------------------------------------------------------------------------- a real server


@pytest.fixture()
def index_copy(tiny_index, tmp_path) -> Path:
    index_dir = tmp_path / "idx"
    shutil.copytree(tiny_index, index_dir)
    return index_dir


def test_a_server_with_keys_refuses_writes_without_the_write_key(index_copy, synth_root, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"{WRITE_KEY}\nread {READ_KEY}\n")
    keys.chmod(0o600)
    photo = consumer_photos(synth_root)[0]
    with serving(index_copy, tmp_path / "server.log", "--api-key-file", str(keys)) as url:
        before = count(url)
        assert_error(add(url, [(photo.name, photo.read_bytes())], item_id="sku-1"), 401, "unauthorized")
        response = requests.post(f"{url}/items", files=[("images", (photo.name, photo.read_bytes()))], data={"item_id": "sku-1"},
                                 headers={"Authorization": f"Bearer {READ_KEY}"}, timeout=REQUEST_TIMEOUT)
        assert_error(response, 403, "forbidden")
        assert count(url) == before and not (index_copy / "uploads").exists()
        assert search(url, photo, k=3).status_code == 200  # searches need no key

        def write(method, path, **kwargs):
            return requests.request(method, f"{url}{path}", headers={"Authorization": f"Bearer {WRITE_KEY}", **kwargs.pop("headers", {})},
                                    timeout=REQUEST_TIMEOUT, **kwargs)

        foreign = write("POST", "/items", files=[("images", (photo.name, photo.read_bytes()))], data={"item_id": "sku-1"},
                        headers={"Origin": "http://evil.example"})
        assert_error(foreign, 403, "forbidden_origin")
        assert_error(write("DELETE", "/items/sku-1", headers={"Host": "evil.example"}), 403, "forbidden_host")
        added = write("POST", "/items", files=[("images", (photo.name, photo.read_bytes()))], data={"item_id": "sku-1"})
        assert added.status_code == 200, added.text
        assert count(url) == before + 1
        assert_error(requests.delete(f"{url}/items/sku-1", timeout=REQUEST_TIMEOUT), 401, "unauthorized")
        assert write("DELETE", "/items/sku-1").status_code == 200 and count(url) == before


def test_read_only_serves_searches_and_refuses_every_write(index_copy, synth_root, tmp_path):
    photo = consumer_photos(synth_root)[0]
    with serving(index_copy, tmp_path / "server.log", "--read-only") as url:
        before = count(url)
        item = requests.get(f"{url}/info", timeout=REQUEST_TIMEOUT).json()
        assert item["access"] == {"read_only": True, "keys_for_reads": False, "writes": False}
        assert_error(add(url, [(photo.name, photo.read_bytes())], item_id="sku-1"), 403, "read_only")
        some_item = search(url, photo, k=1).json()["results"][0]["item_id"]
        assert_error(requests.delete(f"{url}/items/{some_item}", timeout=REQUEST_TIMEOUT), 403, "read_only")
        assert count(url) == before


def test_a_server_on_every_interface_warns_and_takes_no_write_without_a_key(index_copy, synth_root, tmp_path):
    photo = consumer_photos(synth_root)[0]
    log = tmp_path / "server.log"
    with serving(index_copy, log, "--host", "0.0.0.0") as url:  # reached here through the loopback only
        assert_error(add(url, [(photo.name, photo.read_bytes())], item_id="sku-1"), 403, "writes_disabled")
        assert search(url, photo, k=2).status_code == 200
    text = log.read_text()
    assert "warning: listening on 0.0.0.0" in text and "--api-key-file" in text


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def response_complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def post_chunked_with_false_length(url: str, total: int, path: str = "/search") -> tuple[int, bytes, int]:
    """POST ``total`` bytes chunked while declaring ``Content-Length: 100``; returns (status, body, bytes sent)."""
    host, port = url.split("//")[1].split(":")
    block = b"x" * (1 << 20)
    chunk = b"%x\r\n" % len(block) + block + b"\r\n"
    sent = 0
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                  "Content-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        try:
            while sent < total:
                s.sendall(chunk)
                sent += len(block)
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer is waiting
        answer = b""
        try:
            while not response_complete(answer):
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, body, sent


def test_bodies_with_a_false_length_are_cut_off_at_the_limit(index_copy, synth_root, tmp_path):
    with serving(index_copy, tmp_path / "server.log") as url:
        pid = SERVERS[url].pid
        photo = consumer_photos(synth_root)[0]
        for _ in range(3):  # warm: the first searches allocate the model's buffers
            assert search(url, photo, k=3).status_code == 200
        baseline = rss_kib(pid)
        for mib in (25, 200, 1024):
            status, body, sent = post_chunked_with_false_length(url, mib << 20)
            assert status == 413, (mib, status, body[:300])
            assert json.loads(body)["error"]["code"] == "too_large"
            assert sent < 200 << 20  # the server stopped reading long before the end
            grown = (rss_kib(pid) - baseline) / 1024
            assert grown < 50, f"the server grew by {grown:.0f} MiB on a {mib} MiB body"
        status, _, _ = post_chunked_with_false_length(url, 25 << 20, path="/items")
        assert status == 413
        assert search(url, photo, k=3).status_code == 200  # still serving


def test_answers_carry_no_server_paths(index_copy, synth_root, tmp_path):
    photo = consumer_photos(synth_root)[0]
    with serving(index_copy, tmp_path / "server.log") as url:
        answers = [requests.get(f"{url}/info", timeout=REQUEST_TIMEOUT).text, search(url, photo, k=10).text]
        item = search(url, photo, k=1).json()["results"][0]["item_id"]
        answers.append(requests.get(f"{url}/items/{item}", timeout=REQUEST_TIMEOUT).text)
        added = add(url, [(photo.name, photo.read_bytes())], item_id="sku-1")
        assert added.status_code == 200
        answers.append(added.text)
        assert added.json()["images"][0]["image_path"].startswith("uploads/")
    for answer in answers:
        for server_path in (str(tmp_path), str(synth_root), str(Path.home())):
            assert server_path not in answer, answer[:500]


def test_a_server_error_is_logged_with_its_exception(caplog):
    import uvicorn

    from indexer.api import create_app

    class BrokenIndex:
        extra: dict = {}

        @property
        def ntotal(self):
            raise RuntimeError("the disk went away")

    engine = SimpleNamespace(index_dir=None, index=BrokenIndex(), images=SimpleNamespace(override=None), refresh=lambda: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with caplog.at_level(logging.ERROR, logger="indexer.api"):
            response = requests.get(f"http://127.0.0.1:{port}/health", timeout=REQUEST_TIMEOUT)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert_error(response, 500, "internal_error")
    assert "disk went away" not in response.text  # the client learns nothing of the server's insides
    logged = "\n".join(r.getMessage() + "\n" + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
                       for r in caplog.records)
    assert "GET /health failed" in logged and "RuntimeError: the disk went away" in logged and "NoneType: None" not in logged
