"""The page's real Streamlit server for tests: start it, see where it listens, upload to it as a
browser does (used by tests/test_webui_launcher.py and tests/test_webui_browser.py)."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.cli_helpers import free_port, stop  # noqa: F401  (free_port: the webui tests import it from here)

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "webui" / "app.py"
START_TIMEOUT = 90
# Streamlit's XSRF check is a double submit: the same token in this cookie and the X-Xsrftoken header.
XSRF_COOKIE = "_streamlit_xsrf"
XSRF_TOKEN = f"2|00000000|{'5a' * 16}|{int(time.time())}"


def launcher_command(port: int, *args: str) -> list[str]:
    """``python -m webui``: what ``make demo`` runs."""
    return [sys.executable, "-m", "webui", "--port", str(port), *args]


def plain_command(port: int) -> list[str]:
    """``streamlit run webui/app.py`` with no settings but the port (headless: no first-run prompt)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.headless", "true"]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the page's server exited with code {proc.returncode} before it was healthy:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200 and response.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    pytest.fail(f"the page's server was not healthy after {START_TIMEOUT} s:\n{log.read_text(errors='replace')[-4000:]}")


@contextmanager
def running_page(command: list[str], port: int, cwd: Path, log: Path, env: Optional[dict[str, str]] = None) -> Iterator[str]:
    """Run ``command`` in ``cwd`` until the page is healthy; yield its 127.0.0.1 url; always stop it
    (by its own pid). STREAMLIT_* variables of the caller are left out: they would override the
    settings under test."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    child_env.update(env or {})
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(command, cwd=cwd, env=child_env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        yield url
    finally:
        stop(proc)


def listening_addresses(port: int) -> set[str]:
    """The addresses TCP sockets listen on at ``port`` (Linux's /proc/net; "::" or "0.0.0.0" = every interface)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
                found.add(socket.inet_ntop(family, raw))
    return found


def upload_status(port: int, size: int) -> int:
    """The HTTP status Streamlit's upload endpoint answers to a browser's upload of a ``size``-byte
    file: a session opened over the page's websocket, the upload url it hands out, the XSRF token."""
    websocket = pytest.importorskip("websocket")  # websocket-client, which selenium installs
    connection = websocket.create_connection(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"], timeout=60)
    try:
        return _put(port, _upload_url(connection), size)
    finally:
        connection.close()


def _upload_url(connection) -> str:
    from streamlit.proto.BackMsg_pb2 import BackMsg

    run = BackMsg()
    run.rerun_script.query_string = ""
    connection.send_binary(run.SerializeToString())
    session_id = _receive(connection, "new_session").new_session.initialize.session_id
    ask = BackMsg()
    ask.file_urls_request.request_id = "upload-test"
    ask.file_urls_request.file_names.append("photo.jpg")
    ask.file_urls_request.session_id = session_id
    connection.send_binary(ask.SerializeToString())
    return _receive(connection, "file_urls_response").file_urls_response.file_urls[0].upload_url


def _receive(connection, kind: str):
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    for _ in range(1000):
        message = ForwardMsg()
        message.ParseFromString(connection.recv())
        if message.WhichOneof("type") == kind:
            return message
    pytest.fail(f"the page's server sent no {kind}")


def _put(port: int, path: str, size: int) -> int:
    """PUT a multipart upload; stops sending once the server answers (it refuses early by Content-Length)."""
    boundary = "fashionnet-upload-test"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    request = (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Content-Length: {len(head) + size + len(tail)}\r\nX-Xsrftoken: {XSRF_TOKEN}\r\n"
               f"Cookie: {XSRF_COOKIE}={XSRF_TOKEN}\r\nConnection: close\r\n\r\n").encode()
    chunk = b"\xff" * 2**20
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(request + head)
        sent = 0
        try:
            while sent < size and not select.select([s], [], [], 0)[0]:
                s.sendall(chunk[: min(len(chunk), size - sent)])
                sent += min(len(chunk), size - sent)
            if sent == size:
                s.sendall(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status_line = s.makefile("rb").readline()
    return int(status_line.split()[1])
