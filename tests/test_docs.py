"""The documentation a user reads: the README stays short, the docs site builds with warnings as errors, and
every ``senformer`` command shown in the README or the docs exists with the options it uses (each command line
is parsed by the real parser, never run)."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from senformer.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").rglob("*.md"))]
README_MAX_LINES = 150


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_the_docs_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs build needs the test extra (pip install -e '.[test]')")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(REPO / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    site = tmp_path / "site"
    for page in ("getting-started", "outputs", "bigwigs", "variants", "gpus-and-clusters", "accuracy-study",
                 "scaling", "developers", "api/model"):
        assert (site / page / "index.html").is_file(), page
    # the API pages are generated from the docstrings, not empty headings
    assert "EnformerConfig" in (site / "api" / "model" / "index.html").read_text(encoding="utf-8")
    # every figure a page links is in the site
    for html in site.rglob("*.html"):
        for source in re.findall(r'<img [^>]*src="([^"]+\.png)"', html.read_text(encoding="utf-8")):
            assert (html.parent / source).resolve().is_file(), f"{html}: {source}"


# Shown commands ---------------------------------------------------------------------------------------------
def _blocks(text: str) -> list[str]:
    """Shell lines of the page's ```bash and plain ``` blocks, continuation lines joined."""
    lines, inside, language = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside, language = (not inside), line.strip().strip("`")
            continue
        if inside and language in ("", "bash", "sh"):
            lines.append(line.strip())
    joined = "\n".join(lines).replace("\\\n", " ")
    return joined.splitlines()


def _invocation(tokens: list[str]) -> list[str] | None:
    """The arguments after ``senformer`` (also ``-m senformer`` and inside ``--wrap '...'``), else None."""
    for index, token in enumerate(tokens):
        if token == "senformer" and (index == 0 or tokens[index - 1] in ("-m", "&&", ";")):
            return tokens[index + 1:]
        if token == "--wrap" and index + 1 < len(tokens):
            return _invocation(shlex.split(tokens[index + 1]))
    return None


def _shell_words(line: str) -> list[str]:
    line = re.sub(r"\$\{?[A-Z_]+\}?", "1", line)  # job-array variables: any number parses
    return shlex.split(line, comments=True)


def shown_commands() -> list[tuple[str, bool, list[str]]]:
    """``(where, complete, arguments)`` for every ``senformer`` command shown: code-block lines are complete
    command lines; inline ``senformer ...`` spans (and lines with ``...``) may leave options out."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(REPO).as_posix()
        for line in _blocks(text):
            if "senformer" not in line:
                continue
            arguments = _invocation(_shell_words(line))
            if arguments is not None:
                found.append((f"{name}: {line}", "..." not in arguments, arguments))
        for span in re.findall(r"`(senformer [^`]+)`", text.replace("\n", " ")):
            if " / " not in span:  # `senformer download enformer / hg38 / mm10` lists choices
                found.append((f"{name}: `{span}`", False, _shell_words(span)[1:]))
    return found


def _subcommand(parser: argparse.ArgumentParser, arguments: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser that ``arguments`` reach and the words that named it."""
    path = []
    for word in arguments:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if not choices or word not in choices:
            break
        parser = choices[word]
        path.append(word)
    return parser, path


COMMANDS = shown_commands()


def test_the_docs_show_the_commands_users_run():
    shown = {" ".join(_subcommand(build_parser(), arguments)[1]) for _, _, arguments in COMMANDS}
    for command in ("predict", "plot", "analyze variants", "data from-bigwig", "evaluate", "train", "download",
                    "convert", "benchmark scaling", "study accuracy"):
        assert command in shown, command


@pytest.mark.parametrize("where,complete,arguments", COMMANDS, ids=[where[:90] for where, _, _ in COMMANDS])
def test_every_shown_command_exists_with_its_options(where, complete, arguments):
    parser, path = _subcommand(build_parser(), arguments)
    placeholders = {"COMMAND", "...", "FIELD=VALUE"}
    if not path:
        assert arguments and arguments[0] in placeholders | {"--help", "--version"}, f"{where}: no such command"
        return
    if complete:
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            try:
                build_parser().parse_args(arguments)
            except SystemExit as exit_:
                assert exit_.code == 0, f"{where}: {errors.getvalue().strip()}"
        return
    known = {option for action in parser._actions for option in action.option_strings}
    used = [word.split("=")[0] for word in arguments[len(path):] if word.startswith("--")]
    unknown = [option for option in used if option not in known]
    assert not unknown, f"{where}: `senformer {' '.join(path)}` has no option {', '.join(unknown)}"
