"""The house: what the layout of `feeds/` promises a reader.

Imports point one way, from the command line down through orchestration and the stages to the
model, the errors and the settings, so a module can be read knowing only what it imports; and
no module grows past what one sitting reads. Every `import` counts wherever it is written: at
the top, inside a function, under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "feeds"
# The target is about 400 lines; the margin keeps a small fix from forcing a split.
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PACKAGE.glob("*.py"))}


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in it; `import feeds` is `__init__`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from .x import y
                base = ".".join(["feeds", *filter(None, [node.module])])
            else:
                base = node.module or ""
            # `from feeds import state` names a module; `from feeds import __version__` does not.
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "feeds":
                continue
            if len(parts) == 1:
                found.add("__init__")
            elif parts[1] in modules:
                found.add(parts[1])
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it (the first again at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return [*path[path.index(name):], name]
        if name in done:
            return None
        path.append(name)
        for imported in sorted(graph[name]):
            if cycle := visit(imported):
                return cycle
        path.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        if cycle := visit(name):
            return cycle
    return None


def _is_edge(name: str) -> bool:
    """The entry points: the command line (cli, cli_*) and the web endpoint (web, and the
    web_* helpers only it uses). cli imports web and the cli_* modules, web its helpers, and
    nothing imports cli: a stage importing any of them would depend on its own caller."""
    return name in ("cli", "web") or name.startswith(("cli_", "web_"))


def test_imports_count_wherever_they_are_written(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import feeds\n"
        "from feeds import state, __version__\n"
        "from feeds.model import Digest\n"
        "from . import lock\n"
        "if TYPE_CHECKING:\n"
        "    from feeds.workers import Workers\n"
        "def later() -> None:\n"
        "    import feeds.parse\n"
        "    from feeds.cli import main\n"
        "import os, json\n",
        encoding="utf-8",
    )
    known = {"state", "model", "lock", "workers", "parse", "cli", "output"}

    assert _imports(source, known) == {
        "__init__", "state", "model", "lock", "workers", "parse", "cli"
    }


def test_the_cycle_finder_names_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_back_through_others() -> None:
    cycle = _cycle(_graph())

    assert cycle is None, "import cycle: " + " -> ".join(f"feeds.{name}" for name in cycle or [])


def test_the_model_and_the_errors_import_nothing_of_ours_and_the_settings_only_errors() -> None:
    graph = _graph()

    assert graph["model"] == set(), "feeds.model imports " + ", ".join(sorted(graph["model"]))
    assert graph["errors"] == set(), "feeds.errors imports " + ", ".join(sorted(graph["errors"]))
    assert graph["config"] <= {"errors"}, "feeds.config imports " + ", ".join(
        sorted(graph["config"] - {"errors"})
    )


def test_only_the_entry_points_import_the_entry_points_and_nothing_imports_the_cli() -> None:
    graph = _graph()

    wrong = sorted(
        f"feeds.{importer} imports feeds.{imported}"
        for importer, imports in graph.items()
        for imported in imports
        if (_is_edge(imported) and not _is_edge(importer)) or imported == "cli"
    )

    assert wrong == [], "; ".join(wrong)


def test_no_module_is_over_420_lines() -> None:
    """The target is about 400 lines; 420 leaves room for a small fix. A longer module holds
    two things: split it along its seam (as config_file, cli_mail and web_forms were)."""
    long = {
        f"feeds/{path.name}": count
        for path in _modules().values()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }

    assert long == {}, f"over {MAX_LINES} lines: {long}"


def test_only_the_edge_reads_the_settings_file() -> None:
    # Every stage gets a `Settings` as an argument: reading feeds.toml and the environment is
    # the command line's (its shared `session`) and the web endpoint's.
    readers = sorted(name for name, imports in _graph().items() if "config_file" in imports)

    assert readers and all(_is_edge(name) or name == "session" for name in readers), readers
