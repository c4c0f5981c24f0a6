"""The documentation matches the tree: README.md and docs/*.md link only to files (and headings)
that exist, name only paths and kfuzz modules that exist, list every built-in target and every
`kfuzz` command; README.md stays short; no file cites a design document the repository does
not have. Reads files only: imports no torch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 200

# Where `kfuzz.X` lives: the import name maps folders (pyproject.toml's package-dir).
PACKAGE_DIRS = {"kfuzz.kernels": ROOT / "kernels", "kfuzz.oracles": ROOT / "oracles", "kfuzz": ROOT / "fuzz"}
# Paths in the docs that name what a command writes, not a file of the repository.
WRITTEN_BY_COMMANDS = {"bench/results/gpu_check_cuda.md"}
REPO_PREFIXES = ("fuzz/", "kernels/", "oracles/", "bench/", "tests/", "docs/", ".github/", ".ci/")
COMMANDS = ["targets", "run", "replay", "report", "corpus list", "corpus show", "corpus export",
            "corpus rm", "corpus merge"]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache",
                ".ruff_cache", ".hypothesis", "kfuzz.egg-info"}
BINARY_SUFFIXES = {".db", ".png", ".npz", ".pyc", ".so", ".whl", ".gz", ".zip", ".pt"}


def _prose(path: Path) -> str:
    """The page without its fenced code blocks (links and headings live outside them)."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return "\n".join(lines)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", _prose(path), re.M)}


def _links(path: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(_prose(path))]


def test_docs_exist():
    assert README.is_file()
    assert DOCS, "docs/*.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files_that_exist(page: Path):
    broken = []
    for link in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def _repo_paths(text: str) -> set[str]:
    """Repository paths named in code spans: `fuzz/run/runner.py`, `kernels/triton/`."""
    paths = set()
    for span in CODE_SPAN.findall(text):
        for word in re.split(r"[\s,()]+", span):
            word = word.rstrip(".:;")
            if word.startswith(REPO_PREFIXES) and re.fullmatch(r"[\w./-]+", word):
                paths.add(word)
    return paths


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_named_in_the_docs_exist(page: Path):
    missing = sorted(p for p in _repo_paths(page.read_text())
                     if p not in WRITTEN_BY_COMMANDS and not any(c.isupper() for c in p)
                     and not (ROOT / p).exists())
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def _module_file(dotted: str) -> tuple[Path | None, list[str]]:
    """The source file of the longest module prefix of `dotted`, and the names after it."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        for package, folder in PACKAGE_DIRS.items():
            if name == package or name.startswith(package + "."):
                inner = name[len(package):].lstrip(".")
                base = folder.joinpath(*inner.split(".")) if inner else folder
                for candidate in (base / "__init__.py", base.with_suffix(".py")):
                    if candidate.is_file():
                        return candidate, parts[n:]
                break
    return None, parts


def _defines(source: Path, name: str) -> bool:
    """Whether a module defines, imports or lazily exports `name`."""
    text = source.read_text()
    n = re.escape(name)
    return bool(re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{n}\b|^\s*{n}\s*[:=]|"
                          rf"\bimport\b[^\n]*\b{n}\b|^\s+{n},|[\"']{n}[\"']", text, re.M))


def _named_modules(text: str) -> set[str]:
    """`kfuzz.x.y` in code spans, and what code blocks import (`from kfuzz.x import a, b`)."""
    names = set()
    for span in CODE_SPAN.findall(text):
        names |= set(re.findall(r"(?<![\w.-])kfuzz(?:\.[A-Za-z_]\w*)+", span))
    for module, imported in re.findall(r"^\s*from (kfuzz(?:\.\w+)*) import ([\w, ]+)", text, re.M):
        names |= {f"{module}.{name.split()[0]}" for name in imported.split(",") if name.strip()}
    names |= set(re.findall(r"^\s*import (kfuzz(?:\.\w+)+)", text, re.M))
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_kfuzz_modules_named_in_the_docs_exist(page: Path):
    """`kfuzz.store.corpus.CorpusStore`: a module that exists and a name it defines."""
    wrong = []
    for dotted in sorted(_named_modules(page.read_text())):
        source, rest = _module_file(dotted)
        if source is None:
            wrong.append(dotted)
        elif rest and not _defines(source, rest[0]):
            wrong.append(f"{dotted} ({rest[0]} not in {source.relative_to(ROOT)})")
    assert not wrong, f"{page.relative_to(ROOT)} names what does not exist: {wrong}"


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def _all_docs_text() -> str:
    return "\n".join(p.read_text() for p in PAGES)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_documented(command: str):
    text = _all_docs_text()
    words = command.split()
    if len(words) == 2:
        # `kfuzz corpus list`, or the short form `kfuzz corpus list/show/export/rm/merge`
        pattern = rf"kfuzz corpus (?:[a-z]+/)*{words[1]}\b"
    else:
        pattern = rf"kfuzz {words[0]}\b"
    assert re.search(pattern, text), f"`kfuzz {command}` appears in neither README.md nor docs/"


def _parser_commands() -> list[str]:
    """Every command the `kfuzz` parser knows, "corpus list" style (imports no torch)."""
    import argparse

    from kfuzz.cli.app import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    deeper = walk(sub, f"{prefix}{name} ")
                    found += deeper or [f"{prefix}{name}"]
        return found

    return walk(build_parser(), "")


def test_the_command_list_is_the_parsers():
    """COMMANDS above is every command `kfuzz` has: a new one needs its documentation too."""
    assert sorted(_parser_commands()) == sorted(COMMANDS)


def test_every_builtin_target_is_in_the_targets_table():
    """docs/targets.md's table names each built-in target (`kfuzz targets --names`)."""
    source = (ROOT / "fuzz" / "targets" / "builtin" / "__init__.py").read_text()
    block = source[source.index("MODULES"):]
    block = block[:block.index("}") + 1]
    names = set(re.findall(r'"([a-z0-9_]+\.[a-z0-9_]+)"', block))
    names = {n for n in names if not n.startswith("kfuzz.")}
    assert names, "no target names found in kfuzz.targets.builtin.MODULES"
    table = "\n".join(line for line in (ROOT / "docs" / "targets.md").read_text().splitlines()
                      if line.startswith("|"))
    missing = sorted(n for n in names if f"`{n}`" not in table)
    assert not missing, f"docs/targets.md's table lacks {missing}"


def test_every_module_of_fuzz_is_on_the_architecture_page():
    """docs/architecture.md links every module of fuzz/ (a package's __init__.py aside)."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "fuzz").rglob("*.py")
                     if path.name != "__init__.py" and "__pycache__" not in path.parts
                     and f"(../{path.relative_to(ROOT).as_posix()})" not in page)
    assert not missing, f"docs/architecture.md does not describe {missing}"


def _text_files():
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_file() and path.suffix not in BINARY_SUFFIXES:
            yield path


def test_no_file_cites_a_design_document():
    """Docs and code explain themselves or link into docs/; there is no design file to cite."""
    needle = "DESIGN" + ".md"
    citing = []
    for path in _text_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if needle in text:
            citing.append(str(path.relative_to(ROOT)))
    assert not citing, f"files citing {needle}: {citing}"
