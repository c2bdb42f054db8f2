"""The options every command spells the same way (argparse only: no torch, so ``--help`` stays fast).

- ``--data-root``: a command that reads several layouts takes ``--data-root A B`` and
  ``--data-root A --data-root B`` alike (every value is kept); one that reads a single layout
  refuses a second value with an error instead of silently keeping the last.
- ``--device`` auto|cpu|cuda (default auto), ``--runtime`` auto|torch|onnx|openvino (default auto).
- Old spellings stay accepted as hidden aliases (not in ``--help``) where scripts or configs use them.

``tests/test_cli_vocabulary.py`` checks every command's parser against this vocabulary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")
RUNTIMES = ("auto", "torch", "onnx", "openvino")  # fashionnet.runtimes.selection.RUNTIMES, plus auto
DEVICE_HELP = "where the model runs: auto (default: the GPU when torch sees one), cpu or cuda"
RUNTIME_HELP = ("run the model with torch, ONNX Runtime or OpenVINO (CPU only; pip install fashionnet-search[onnx] "
                "and [openvino]; exported once per model to $FASHIONNET_ONNX_CACHE or ~/.cache/fashionnet/onnx; "
                "falls back with a warning: openvino to onnx, onnx to torch). "
                "Default auto: on a CPU the fastest one installed (openvino, then onnx), else torch")


class OneValue(argparse.Action):
    """An option that takes one value and refuses to be given twice (no silent last-one-wins).
    Its default must be None (fill a default in after parsing). ``--data-root A B`` is refused by
    argparse itself ("unrecognized arguments: B") where the command has no positionals to take B."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, self.dest, None)
        if given is not None:
            raise argparse.ArgumentError(self, f"this command reads one folder, got a second: {given} and {values} "
                                               "(run it once per folder)")
        setattr(namespace, self.dest, values)


def data_root_option(p: argparse.ArgumentParser, *, several: bool, help: str, type=Path, **kwargs) -> argparse.Action:
    """``--data-root``: repeatable and space-separated alike when ``several``, else exactly one folder."""
    if several:
        return p.add_argument("--data-root", action="extend", nargs="+", type=type, metavar="ROOT",
                              help=help + " (several: --data-root A B, or --data-root A --data-root B)", **kwargs)
    return p.add_argument("--data-root", action=OneValue, type=type, metavar="ROOT", help=help + " (one folder)", **kwargs)


def device_option(p: argparse.ArgumentParser, help: str = DEVICE_HELP) -> argparse.Action:
    return p.add_argument("--device", default="auto", choices=DEVICES, help=help)


def runtime_option(p: argparse.ArgumentParser, help: str = RUNTIME_HELP, **kwargs) -> argparse.Action:
    return p.add_argument("--runtime", default=kwargs.pop("default", "auto"), choices=RUNTIMES, help=help, **kwargs)


def hidden_alias(p: argparse.ArgumentParser, *old: str, dest: str, **kwargs) -> argparse.Action:
    """An old spelling of an option, still accepted but not shown in --help (its default is the new option's)."""
    return p.add_argument(*old, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)
