"""The command code lives in ``optforge.cli``: no other module imports typer or rich (or
the commands), and the ``optforge`` entry point of pyproject.toml is the Typer app."""

from __future__ import annotations

import ast
import tomllib
from importlib import import_module
from pathlib import Path

import pytest
import typer

import optforge

ROOT = Path(optforge.__file__).parent
COMMAND_LIBRARIES = {"typer", "rich", "click"}
CORE = sorted(p for p in ROOT.rglob("*.py") if "cli" not in p.relative_to(ROOT).parts[:1])


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved), anywhere in it."""
    package = ".".join(("optforge", *path.relative_to(ROOT).with_suffix("").parts))
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out |= {module} | {f"{module}.{a.name}" for a in node.names}
    return out


def test_the_scan_sees_the_commands_imports():
    """The check below can fail: the command modules themselves import typer and rich, and
    a relative import of the commands is resolved to ``optforge.cli``."""
    seen = imported(ROOT / "cli" / "main.py")
    assert {"typer", "rich.console", "optforge.cli.bench"} <= seen
    assert "optforge.cli.search" in imported(ROOT / "cli" / "bench.py")


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_modules_import_no_command_code(path):
    names = imported(path)
    libraries = sorted(n for n in names if n.split(".")[0] in COMMAND_LIBRARIES)
    assert not libraries, f"{path.relative_to(ROOT)} imports {libraries}: move it to optforge/cli"
    commands = sorted(n for n in names if n == "optforge.cli" or n.startswith("optforge.cli."))
    assert not commands, f"{path.relative_to(ROOT)} imports the commands {commands}"


def test_the_console_entry_point_is_the_typer_app():
    pyproject = tomllib.loads((ROOT.parents[1] / "pyproject.toml").read_text())
    module, _, name = pyproject["project"]["scripts"]["optforge"].partition(":")
    app = getattr(import_module(module), name)
    assert isinstance(app, typer.Typer)
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    groups = {g.name for g in app.registered_groups}
    assert commands == {"bench", "search", "export", "report", "demo"}
    assert groups == {"zoo", "runs"}


def test_the_app_does_not_shadow_a_module():
    """``optforge.cli.app`` is the Typer app (the entry point); its module is ``cli.main``."""
    import importlib

    import typer

    import optforge.cli

    assert isinstance(optforge.cli.app, typer.Typer)
    assert importlib.import_module("optforge.cli.main").app is optforge.cli.app
    assert not (ROOT / "cli" / "app.py").exists()
