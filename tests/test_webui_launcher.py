"""Serving the page safely: ``python -m webui`` (``make demo``) and ``streamlit run webui/app.py``
listen on 127.0.0.1 and refuse uploads over the page's limit, whatever folder they start from.

The real-server tests start Streamlit from a temporary folder (no .streamlit/ there), look at
the addresses its socket listens on, and upload just under and just over the limit through
Streamlit's own upload endpoint, as the browser does.
"""

from __future__ import annotations

import sys

import pytest
from streamlit import config as streamlit_config

from tests.webui_server import free_port, launcher_command, listening_addresses, plain_command, running_page, upload_status
from webui.__main__ import APP, page_environment, parse_args, streamlit_argv, streamlit_options
from webui.settings import ALLOW_INDEX_CHOICE_ENV, INDEX_ENV, MAX_UPLOAD_MB

MB = 2**20


def test_launcher_defaults_serve_this_machine_only_with_the_page_upload_limit():
    args = parse_args([])
    options = streamlit_options(args)
    assert options["server.address"] == "127.0.0.1"
    assert options["server.port"] == 8501
    assert options["server.maxUploadSize"] == MAX_UPLOAD_MB == 20
    assert options["server.headless"] is True and options["browser.gatherUsageStats"] is False
    argv = streamlit_argv(args)
    assert argv[:2] == ["run", str(APP)]
    flags = dict(zip(argv[2::2], argv[3::2]))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.maxUploadSize"] == "20"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert page_environment(args) == {}  # the index and the choice stay the server's settings


def test_launcher_options_are_streamlit_options():
    for name in streamlit_options(parse_args([])):
        streamlit_config.get_option(name)  # raises for an unknown option


def test_launcher_flags_reach_streamlit_and_the_page():
    args = parse_args(["--host", "0.0.0.0", "--port", "9001", "--index", "indexes/shop", "--allow-index-choice"])
    options = streamlit_options(args)
    assert (options["server.address"], options["server.port"], options["server.maxUploadSize"]) == ("0.0.0.0", 9001, MAX_UPLOAD_MB)
    assert page_environment(args) == {INDEX_ENV: "indexes/shop", ALLOW_INDEX_CHOICE_ENV: "1"}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads listening sockets from /proc/net")
@pytest.mark.parametrize("how", ["python -m webui", "streamlit run webui/app.py"])
def test_page_started_from_another_folder_listens_locally_and_refuses_big_uploads(how, tmp_path):
    port = free_port()
    missing = str(tmp_path / "no_index")  # the page stops at its message: no model is loaded
    if how == "python -m webui":
        command, env = launcher_command(port, "--index", missing), {}
    else:
        command, env = plain_command(port), {INDEX_ENV: missing}
    with running_page(command, port, cwd=tmp_path, log=tmp_path / "streamlit.log", env=env):
        found = (listening_addresses(port), upload_status(port, (MAX_UPLOAD_MB - 1) * MB), upload_status(port, (MAX_UPLOAD_MB + 1) * MB))
    assert found == ({"127.0.0.1"}, 204, 413), (tmp_path / "streamlit.log").read_text(errors="replace")[-3000:]
