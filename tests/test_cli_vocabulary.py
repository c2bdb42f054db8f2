"""One vocabulary across commands: every command's parser spells and means the shared flags alike.

Walks each ``indexer`` subcommand, the training parser, each ``scripts/*.py`` parser and
``python -m webui``, and checks:

- shared flags have one spelling (``--data-root``, ``--out``, ``--device``, ``--runtime``, ``-k``,
  ``--batch-size``, ``--max-queries``, ``--whiten-dim``); old spellings may stay only as hidden aliases;
- ``--device`` is auto|cpu|cuda with default auto, ``--runtime`` auto|torch|onnx|openvino with default
  auto, on every command that runs the model (``--runtime`` where it runs for queries);
- ``--data-root`` takes several values both as ``--data-root A B`` and ``--data-root A --data-root B``
  where the command reads several, and refuses a second value where it reads one;
- every option and positional has help text, and ``--out``'s help says what is written there;
- no message shown to a CLI user names a Python parameter (``--force (force=True)``).
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (ROOT / "scripts").glob("*.py"))

DEVICES = ["auto", "cpu", "cuda"]
RUNTIMES = {"auto", "torch", "onnx", "openvino"}

# visible spellings that must not appear: the shared flag each one means
RETIRED = {
    "--batch": "--batch-size", "--bs": "--batch-size", "--batch_size": "--batch-size",
    "--k": "-k", "--top-k": "-k", "--topk": "-k",
    "--val-max-queries": "--max-queries", "--max_queries": "--max-queries",
    "--data_root": "--data-root", "--dataroot": "--data-root", "--root": "--data-root", "--data-dir": "--data-root",
    "--dev": "--device", "--output": "--out", "-o": "--out",
}
WHITENING_RETIRED = {"--dim": "--whiten-dim", "--shrinkage": "--whiten-shrinkage", "--by-part": "--whiten-by-part",
                     "--augmented-views": "--whiten-augmented-views"}

# commands that run the model (need --device) and that run it for queries (need --runtime)
RUNS_MODEL = {"indexer build", "indexer add", "indexer query", "indexer serve", "train", "python -m webui",
              "scripts/benchmark_api.py", "scripts/benchmark_model.py", "scripts/benchmark_serving.py",
              "scripts/calibrate_ood.py", "scripts/draw_real_photos.py", "scripts/evaluate_retrieval.py",
              "scripts/fit_whitening.py", "scripts/train_fashionnet.py", "scripts/transfer_study.py"}
RUNS_QUERIES = {"indexer build", "indexer add", "indexer query", "indexer serve", "scripts/benchmark_query.py",
                "scripts/benchmark_serving.py"}
# commands with --data-root: reading several layouts, or exactly one
SEVERAL_ROOTS = {"train", "scripts/train_fashionnet.py", "scripts/fit_whitening.py", "scripts/calibrate_ood.py", "scripts/fit_close_match.py",
                 "scripts/evaluate_retrieval.py"}
ONE_ROOT = {"indexer build", "scripts/benchmark_query.py", "scripts/benchmark_runtime.py", "scripts/check_milvus_parity.py"}


def _script_parser(name: str) -> argparse.ArgumentParser:
    module = load_script(name)
    assert hasattr(module, "get_args_parser"), f"scripts/{name}.py: build its parser in a get_args_parser() function"
    return module.get_args_parser()


def commands() -> dict[str, argparse.ArgumentParser]:
    from fashionnet.training.args import get_args_parser as training_parser
    from indexer.cli import get_args_parser as indexer_parser
    from webui.__main__ import get_args_parser as webui_parser

    found = {}
    sub = next(a for a in indexer_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        found[f"indexer {name}"] = parser
    found["train"] = training_parser()
    found["python -m webui"] = webui_parser()
    for name in SCRIPTS:
        if (ROOT / "scripts" / f"{name}.py").read_text().count("argparse") or name in ("train_fashionnet", "make_synthetic_deepfashion"):
            found[f"scripts/{name}.py"] = _script_parser(name)
    return found


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    return commands()


def visible(parser: argparse.ArgumentParser):
    """(action, option strings) of every option and positional shown in --help."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        yield action


def option(parser: argparse.ArgumentParser, flag: str):
    return next((a for a in visible(parser) if flag in a.option_strings), None)


def test_every_script_and_command_is_walked(parsers):
    assert {"indexer build", "indexer add", "indexer query", "indexer serve", "train", "python -m webui"} <= set(parsers)
    assert {f"scripts/{n}.py" for n in SCRIPTS} <= set(parsers), "a script without an argparse parser in get_args_parser()"


def test_shared_flags_have_one_spelling(parsers):
    wrong = []
    for command, parser in parsers.items():
        for action in visible(parser):
            for flag in action.option_strings:
                if flag in RETIRED:
                    wrong.append(f"{command}: {flag} (spell it {RETIRED[flag]})")
        if any(f.startswith("--whiten-") for a in visible(parser) for f in a.option_strings):
            wrong += [f"{command}: {flag} (spell it {WHITENING_RETIRED[flag]})"
                      for a in visible(parser) for flag in a.option_strings if flag in WHITENING_RETIRED]
    assert not wrong, "\n".join(wrong)


def test_every_option_has_help(parsers):
    missing = [f"{command}: {'/'.join(a.option_strings) or a.dest}" for command, parser in parsers.items()
               for a in visible(parser) if not (a.help or "").strip()]
    assert not missing, "options without help:\n" + "\n".join(missing)


def test_out_says_what_is_written(parsers):
    vague = [command for command, parser in parsers.items()
             if (a := option(parser, "--out")) is not None and not re.search(r"\bwrit", a.help or "")]
    assert not vague, f"--out help that does not say what is written there: {vague}"


def test_device_is_auto_cpu_cuda_defaulting_to_auto(parsers):
    for command, parser in parsers.items():
        device = option(parser, "--device")
        if command in RUNS_MODEL:
            assert device is not None, f"{command} runs the model but has no --device"
        if device is not None:
            assert list(device.choices) == DEVICES and device.default == "auto", (command, device.choices, device.default)


def test_runtime_is_the_same_choice_defaulting_to_auto(parsers):
    for command, parser in parsers.items():
        runtime = option(parser, "--runtime")
        if command in RUNS_QUERIES:
            assert runtime is not None, f"{command} runs the model for queries but has no --runtime"
        if runtime is not None:
            assert set(runtime.choices) == RUNTIMES, (command, runtime.choices)
            # a list option (several runtimes compared) fills its default in after parsing and says so
            assert runtime.default == "auto" or (runtime.default is None and "default auto" in runtime.help), (command, runtime.default)


def test_backend_means_the_index_backend_everywhere(parsers):
    """``--backend`` names where an index keeps its vectors (the model's runtime is ``--runtime``)."""
    have = {command: option(parser, "--backend") for command, parser in parsers.items() if option(parser, "--backend") is not None}
    assert {"indexer build", "indexer add", "indexer remove", "indexer query", "indexer info", "indexer serve"} <= set(have)
    for command, action in have.items():
        assert list(action.choices) == ["faiss", "milvus"], (command, action.choices)
        assert action.default == ("faiss" if command == "indexer build" else None), (command, action.default)
        assert option(parsers[command], "--milvus-uri") is not None, f"{command} has --backend but no --milvus-uri"


def _argv_for(parser: argparse.ArgumentParser, *extra: str) -> list[str]:
    """The parser's required options with placeholder values, then ``extra``."""
    argv = []
    for action in parser._actions:
        if action.required and action.option_strings and "--data-root" not in action.option_strings:
            argv += [action.option_strings[0], "x"]
    return [*argv, *extra]


def _parse(command: str, parser: argparse.ArgumentParser, *extra: str) -> argparse.Namespace:
    if command.startswith("indexer "):
        from indexer.cli import get_args_parser

        return get_args_parser().parse_args([command.split()[1], *_argv_for(parser, *extra)])
    return parser.parse_args(_argv_for(parser, *extra))


def test_every_data_root_is_classified(parsers):
    have = {command for command, parser in parsers.items() if option(parser, "--data-root") is not None}
    assert have == SEVERAL_ROOTS | ONE_ROOT, f"classify these as reading one root or several: {have ^ (SEVERAL_ROOTS | ONE_ROOT)}"


@pytest.mark.parametrize("command", sorted(SEVERAL_ROOTS))
def test_several_data_roots_in_either_form_keep_every_value(parsers, command):
    parser = parsers[command]
    spaced = _parse(command, parser, "--data-root", "A", "B").data_root
    repeated = _parse(command, parser, "--data-root", "A", "--data-root", "B").data_root
    mixed = _parse(command, parser, "--data-root", "A", "B", "--data-root", "C").data_root
    assert [str(r) for r in spaced] == [str(r) for r in repeated] == ["A", "B"], command
    assert [str(r) for r in mixed] == ["A", "B", "C"], command


@pytest.mark.parametrize("command", sorted(ONE_ROOT))
def test_one_data_root_refuses_a_second(parsers, command, capsys):
    parser = parsers[command]
    assert str(_parse(command, parser, "--data-root", "A").data_root) == "A"
    assert option(parser, "--data-root").nargs is None, "--help shows one value"
    with pytest.raises(SystemExit) as exc:
        _parse(command, parser, "--data-root", "A", "--data-root", "B")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--data-root" in err and "one folder" in err and "A and B" in err, err
    with pytest.raises(SystemExit) as exc:  # argparse's own refusal: nothing else takes B
        _parse(command, parser, "--data-root", "A", "B")
    assert exc.value.code == 2 and "unrecognized arguments: B" in capsys.readouterr().err


def test_training_reads_every_data_root_and_its_config_keys(tmp_path):
    from fashionnet.training.args import DEFAULT_DATA_ROOTS, parse_args

    assert parse_args(["--data-root", "A", "--data-root", "B"]).data_root == [Path("A"), Path("B")]
    assert parse_args([]).data_root == list(DEFAULT_DATA_ROOTS)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data_root: [c/consumer2shop, c/inshop]\nmax_queries: 7\n")
    args = parse_args(["--config", str(cfg)])
    assert args.data_root == [Path("c/consumer2shop"), Path("c/inshop")] and args.val_max_queries == 7
    assert parse_args(["--config", str(cfg), "--data-root", "A"]).data_root == [Path("A")], "the command line wins over the file"
    cfg.write_text("val_max_queries: 9\n")  # the old key (configs/demo.yaml) still works, as does the old flag
    assert parse_args(["--config", str(cfg)]).val_max_queries == 9
    assert parse_args(["--val-max-queries", "5"]).val_max_queries == parse_args(["--max-queries", "5"]).val_max_queries == 5


PARAMETER_IN_MESSAGE = re.compile(r"--[a-z][a-z0-9-]*\s*\(\w+\s*=\s*[^)]*\)")


def test_no_message_names_a_python_parameter_beside_a_flag():
    found = []
    for folder in ("indexer", "fashionnet", "scripts", "webui"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and PARAMETER_IN_MESSAGE.search(node.value):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.strip()[:100]}")
    assert not found, "word these for the CLI user (name the flag only):\n" + "\n".join(found)
