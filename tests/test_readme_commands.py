"""Every command README.md shows in a ```bash block resolves as written.

For each command line that invokes ``indexer SUB``, ``python scripts/NAME.py``, ``python -m webui``,
a console script of setup.cfg (``fashionnet-train``, ``fashionnet-webui``, ...) or ``make TARGET``:

- the script, module, console script or Makefile target exists;
- ``--help`` of it (of the subcommand, for ``indexer SUB``) exits 0, run with this venv's python;
- every ``--flag`` (and ``-x``) written on the line appears in that ``--help`` text, and every
  ``VAR=value`` given to ``make`` is a variable of the Makefile.

The ``--help`` texts are gathered once, in one child process (torch is imported once, not once per
script); a command whose ``--help`` fails there is run again alone, in its own process, before the
test reports it.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"

PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
SCRIPT = re.compile(r"^(\./)?scripts/[\w.-]+\.py$")
MODULES = {"webui": "webui", "indexer.cli": "indexer"}  # `python -m X` checked, and as which command
WRAPPERS = {"env", "time", "nohup", "exec"}
OPERATOR_CHARS = set("();<>|&")
HELP_TIMEOUT_S = 300


def console_scripts() -> dict[str, str]:
    """setup.cfg's console scripts: name -> "module:function"."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    entries = {}
    for line in cfg.get("options.entry_points", "console_scripts").strip().splitlines():
        name, _, target = line.partition("=")
        entries[name.strip()] = target.strip()
    return entries


CONSOLE = console_scripts()


@dataclass(frozen=True)
class Invocation:
    line_no: int  # README line the command starts on
    text: str  # the command as written (continuations joined)
    kind: str  # "script", "module", "console" or "make"
    name: str  # script path, module, console script name, or "make"
    sub: str | None = None  # indexer subcommand
    flags: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()  # make
    variables: tuple[str, ...] = ()  # make VAR=value

    @property
    def help_key(self) -> str:
        return json.dumps([self.kind, self.name, self.sub])

    def __str__(self) -> str:
        return f"README.md line {self.line_no}: {self.text}"


# ----------------------------------------------------------------------------- reading the README

def bash_lines(markdown: str) -> list[tuple[int, str]]:
    """(line number, command) of every line in a ```bash block, backslash continuations joined."""
    found, in_block, pending, start = [], False, "", 0
    for no, line in enumerate(markdown.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block = stripped == "```bash" if not in_block else False
            pending = ""
            continue
        if not in_block:
            continue
        if not pending:
            start = no
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command, pending = pending + line, ""
        if command.strip():
            found.append((start, command.strip()))
    return found


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line: words, split at ``&&``, ``|``, ``;`` and redirections,
    with comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words = [], []
    for token in lexer:
        if token and set(token) <= OPERATOR_CHARS:
            commands.append(words)
            words = []
        else:
            words.append(token)
    commands.append(words)
    return [c for c in commands if c]


def options(words: list[str]) -> tuple[str, ...]:
    """The ``--flag`` and ``-x`` words of a command's arguments (``--flag=value`` as ``--flag``)."""
    flags = []
    for word in words:
        if word == "--":
            break
        if re.match(r"^--[A-Za-z][\w-]*(=|$)", word):
            flags.append(word.split("=", 1)[0])
        elif re.match(r"^-[A-Za-z]$", word):
            flags.append(word)
    return tuple(flags)


def invocation(words: list[str], line_no: int, text: str) -> Invocation | None:
    """What a simple command invokes, if it is one of the commands this test checks."""
    while words and (words[0] in WRAPPERS or re.match(r"^[A-Za-z_]\w*=", words[0])):
        words = words[1:]  # `env`, `time`, VAR=value before the command
    if not words:
        return None
    prog, args = Path(words[0]).name, words[1:]
    if PYTHON.match(prog):
        if len(args) >= 2 and args[0] == "-m" and args[1] in MODULES:
            if MODULES[args[1]] == "indexer":
                return indexer_invocation(args[2:], line_no, text)
            return Invocation(line_no, text, "module", args[1], flags=options(args[2:]))
        if args and SCRIPT.match(args[0]):
            return Invocation(line_no, text, "script", args[0].removeprefix("./"), flags=options(args[1:]))
        return None
    if prog == "torchrun":
        for i, word in enumerate(args):
            if SCRIPT.match(word):
                return Invocation(line_no, text, "script", word.removeprefix("./"), flags=options(args[i + 1:]))
        return None
    if prog == "indexer":
        return indexer_invocation(args, line_no, text)
    if prog in CONSOLE:
        return Invocation(line_no, text, "console", prog, flags=options(args))
    if prog == "make":
        return Invocation(line_no, text, "make", "make", flags=options(args),
                          targets=tuple(a for a in args if not a.startswith("-") and "=" not in a),
                          variables=tuple(a.split("=", 1)[0] for a in args if re.match(r"^[A-Za-z_]\w*=", a)))
    return None


def indexer_invocation(args: list[str], line_no: int, text: str) -> Invocation:
    sub = args[0] if args and not args[0].startswith("-") else None
    return Invocation(line_no, text, "console", "indexer", sub=sub, flags=options(args[1:] if sub else args))


def readme_invocations(markdown: str) -> list[Invocation]:
    found = []
    for line_no, line in bash_lines(markdown):
        for words in split_commands(line):
            inv = invocation(words, line_no, line)
            if inv is not None:
                found.append(inv)
    return found


INVOCATIONS = readme_invocations(README.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- --help texts

HELPER = r"""
import contextlib, importlib, io, json, runpy, sys, traceback

keys, console, out_path = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
results = {}
for key in keys:
    kind, name, sub = json.loads(key)
    buffer, saved_argv = io.StringIO(), sys.argv[:]
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            if kind == "script":
                sys.argv = [name, "--help"]
                runpy.run_path(name, run_name="__main__")
            elif kind == "module":
                sys.argv = [name, "--help"]
                runpy.run_module(name, run_name="__main__", alter_sys=True)
            else:
                module, function = console[name].split(":")
                sys.argv = [name, *([sub] if sub else []), "--help"]
                getattr(importlib.import_module(module), function)()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        code = 1
        buffer.write(traceback.format_exc())
    finally:
        sys.argv = saved_argv
    results[key] = {"code": code, "output": buffer.getvalue()}
with open(out_path, "w", encoding="utf-8") as f:
    json.dump(results, f)
"""


def alone(kind: str, name: str, sub: str | None) -> list[str]:
    """The command line that runs one ``--help`` in its own process."""
    if kind == "script":
        return [sys.executable, name, "--help"]
    if kind == "module":
        return [sys.executable, "-m", name, "--help"]
    module, function = CONSOLE[name].split(":")
    call = f"import sys; sys.argv[0] = {name!r}; from {module} import {function}; sys.exit({function}())"
    return [sys.executable, "-c", call, *([sub] if sub else []), "--help"]


def gather_help(keys: list[str], scratch: Path) -> dict[str, dict]:
    out = scratch / "help.json"
    run = subprocess.run([sys.executable, "-c", HELPER, json.dumps(keys), json.dumps(CONSOLE), str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
    results = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    for key in keys:
        if results.get(key, {}).get("code") == 0:
            continue
        # failed (or never reached) in the shared process: the verdict is that of a process of its own
        one = subprocess.run(alone(*json.loads(key)), cwd=ROOT, capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
        results[key] = {"code": one.returncode, "output": one.stdout + one.stderr
                        + ("" if key in results else f"\n(shared helper: {run.stderr[-2000:]})")}
    return results


# The self-test below checks these commands as well, whatever the README holds.
SELF_TEST_KEYS = [json.dumps(["console", "indexer", "build"]), json.dumps(["script", "scripts/evaluate_retrieval.py", None])]


@pytest.fixture(scope="module")
def help_texts(tmp_path_factory) -> dict[str, dict]:
    keys = sorted({inv.help_key for inv in INVOCATIONS if inv.kind != "make"} | set(SELF_TEST_KEYS))
    return gather_help(keys, tmp_path_factory.mktemp("readme_help"))


def makefile_targets_and_variables() -> tuple[set[str], set[str]]:
    targets, variables = set(), set()
    for line in MAKEFILE.read_text(encoding="utf-8").splitlines():
        if line.startswith(("\t", "#")) or not line.strip():
            continue
        assignment = re.match(r"^\s*(?:export\s+|override\s+)?([A-Za-z_]\w*)\s*(?:[:?+!]?=|::=)", line)
        if assignment:
            variables.add(assignment.group(1))
            continue
        rule = re.match(r"^([^:=#]+?)\s*::?(?!=)(.*)$", line)
        if rule:
            targets.update(rule.group(1).split())
            if rule.group(1).strip() == ".PHONY":
                targets.update(rule.group(2).split())
    return targets, variables


def problems(inv: Invocation, help_texts: dict[str, dict]) -> list[str]:
    """What does not resolve in one README command (empty when it is fine)."""
    if inv.kind == "make":
        targets, variables = makefile_targets_and_variables()
        found = [f"make target {t!r} is not in the Makefile" for t in inv.targets if t not in targets]
        found += [f"make variable {v!r} is not set or used in the Makefile" for v in inv.variables if v not in variables]
        return found + [f"make flag {f!r} is not checked here; leave it out of the README" for f in inv.flags]
    if inv.kind == "script" and not (ROOT / inv.name).is_file():
        return [f"{inv.name} does not exist"]
    if inv.kind == "console" and inv.name not in CONSOLE:
        return [f"{inv.name} is not a console script of setup.cfg"]
    command = " ".join(x for x in (inv.name, inv.sub) if x)
    result = help_texts[inv.help_key]
    if result["code"] != 0 or "usage:" not in result["output"]:
        return [f"`{command} --help` exited {result['code']}:\n{result['output'][-3000:]}"]
    return [f"`{command}` has no {flag} (not in its --help)" for flag in inv.flags
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", result["output"])]


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("inv", INVOCATIONS, ids=lambda inv: f"line{inv.line_no}-{inv.name}-{inv.sub or ''}")
def test_readme_command_resolves(inv, help_texts):
    found = problems(inv, help_texts)
    assert not found, f"{inv}\n" + "\n".join(found)


def test_the_readme_commands_were_found():
    """The parser sees the README's commands (a parser that found none would pass every check)."""
    kinds = {(inv.kind, inv.name, inv.sub) for inv in INVOCATIONS}
    assert ("console", "indexer", "build") in kinds
    assert ("console", "indexer", "serve") in kinds
    assert ("module", "webui", None) in kinds
    assert ("make", "make", None) in kinds
    assert any(kind == "script" for kind, _, _ in kinds)
    assert {t for inv in INVOCATIONS for t in inv.targets} >= {"demo", "test"}


def test_a_misspelled_flag_is_caught(help_texts):
    """The checks themselves: a wrong flag, subcommand, script or target is reported."""
    bad = readme_invocations("```bash\n"
                             "indexer build --chekpoint c.pt --images x --out y\n"
                             "python scripts/evaluate_retrieval.py --checkpoint c.pt \\\n    --data-roots d\n"
                             "python scripts/no_such_script.py --help\n"
                             "make demo-now PORTT=1\n"
                             "```\n")
    assert [len(problems(inv, help_texts)) for inv in bad] == [1, 1, 1, 2]
    good = readme_invocations("```bash\nindexer build --checkpoint c.pt --images x --out y  # --not-a-flag\n```\n")
    assert [problems(inv, help_texts) for inv in good] == [[]]


def test_shell_lines_are_split_into_commands():
    line = 'echo "read $(python -c \'import x\')" >> keys && FOO=1 .venv/bin/indexer info idx --json # --nope'
    assert split_commands(line) == [["echo", "read $(python -c 'import x')"], ["keys"], ["FOO=1", ".venv/bin/indexer", "info", "idx", "--json"]]
    inv = readme_invocations(f"```bash\n{line}\n```\n")
    assert [(i.name, i.sub, i.flags) for i in inv] == [("indexer", "info", ("--json",))]
