"""Serve the query-by-photo page: ``python -m webui [--host 127.0.0.1] [--port 8501] [--index DIR]
[--allow-index-choice] [--device auto]`` (what ``make demo`` runs).

Streamlit reads ``.streamlit/config.toml`` from the working directory (and the script's folder),
and ``STREAMLIT_*`` variables override it. The settings that keep the page safe to serve (listen
on 127.0.0.1 unless told otherwise, the upload limit, no usage statistics) are passed here as
command-line flags, which override both, so they hold wherever the page is started from.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from fashionnet.cli.options import device_option, runtime_option
from webui.settings import ALLOW_INDEX_CHOICE_ENV, DEFAULT_HOST, DEFAULT_INDEX, DEFAULT_PORT, INDEX_ENV, MAX_UPLOAD_MB, MILVUS_URI_ENV

APP = Path(__file__).resolve().with_name("app.py")


DEVICE_ENV = "FASHIONNET_DEVICE"  # read by webui/app.py
RUNTIME_ENV = "FASHIONNET_RUNTIME"  # read by webui/app.py


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m webui", description="Serve the FashionNet query-by-photo page.")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0: every network interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--index", help=f"index directory to search (default: ${INDEX_ENV}, else {DEFAULT_INDEX})")
    parser.add_argument("--allow-index-choice", action="store_true",
                        help=f"show visitors a box to open any index directory on this server (trusted users only; "
                             f"also {ALLOW_INDEX_CHOICE_ENV}=1)")
    parser.add_argument("--milvus-uri", metavar="URI",
                        help=f"where a Milvus index's collection is now, if it moved (default: ${MILVUS_URI_ENV}, else the URI the "
                             "index recorded): a Milvus Lite file or a server URL")
    device_option(parser, f"where the page runs the model and the search: auto (default: ${DEVICE_ENV} if set, else the GPU "
                          "when present), cpu or cuda")
    runtime_option(parser, f"how the page runs the model: auto (default: ${RUNTIME_ENV} if set, else the fastest CPU runtime "
                           "installed), torch, onnx or openvino")
    return parser


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    return get_args_parser().parse_args(argv)


def streamlit_options(args: argparse.Namespace) -> dict[str, object]:
    """The Streamlit config options the page is served with."""
    return {
        "server.address": args.host,
        "server.port": args.port,
        "server.maxUploadSize": MAX_UPLOAD_MB,
        "server.headless": True,
        # a served page does not rerun when its files change
        "server.fileWatcherType": "none",
        "server.runOnSave": False,
        "browser.gatherUsageStats": False,
        "client.toolbarMode": "viewer",
        # tracebacks name server paths; they go to the server's log only
        "client.showErrorDetails": "type",
    }


def streamlit_argv(args: argparse.Namespace) -> list[str]:
    """``streamlit run`` arguments: the page and its options as flags."""
    flags = []
    for name, value in streamlit_options(args).items():
        flags += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return ["run", str(APP), *flags]


def page_environment(args: argparse.Namespace) -> dict[str, str]:
    """Variables the page reads its index settings from (on top of the inherited ones)."""
    env = {}
    if args.index:
        env[INDEX_ENV] = args.index
    if args.allow_index_choice:
        env[ALLOW_INDEX_CHOICE_ENV] = "1"
    if args.device != "auto":
        env[DEVICE_ENV] = args.device
    if args.runtime != "auto":
        env[RUNTIME_ENV] = args.runtime
    if args.milvus_uri:
        env[MILVUS_URI_ENV] = args.milvus_uri
    return env


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    os.environ.update(page_environment(args))
    from streamlit.web import cli

    # Streamlit's own command line: it loads the config, then the flags over it; exits when stopped.
    cli.main(streamlit_argv(args), prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
