"""The package's layers hold: every import of every module (read with ``ast``, at any
depth, ``TYPE_CHECKING`` ones included) goes to the module's own layer or to one its row
of the table in docs/ARCHITECTURE.md rests on; no import circle exists outside ``lang/``;
SQL (f-strings included) is written only in ``store/``, also not in ``experiments/`` or
``benchmarks/``, which read stores through its functions. The checker itself is tested
first, on a hand-made package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import optforge

SRC = Path(optforge.__file__).parent
DOC = SRC.parents[1] / "docs" / "ARCHITECTURE.md"
SQL = re.compile(r"\b(SELECT\b.*\bFROM|INSERT\b.*\bINTO|UPDATE\b.*\bSET|DELETE\s+FROM|"
                 r"CREATE\s+(TABLE|INDEX))\b", re.S)


# ------------------------------------------------------------------ the checker


Rows = list[tuple[set[str], set[str]]]


def layer_table(text: str) -> Rows:
    """The ``| layer | rests on | ...`` table: per row, the modules and packages it names
    (one layer) and the names of the layers it rests on."""
    rows, inside = [], False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells[:2] == ["layer", "rests on"]:
            inside = True
        elif inside and line.lstrip().startswith("|"):
            if not set(cells[0]) <= set("-: "):
                rows.append((set(re.findall(r"`([\w.]+)`", cells[0])),
                             set(re.findall(r"`([\w.]+)`", cells[1]))))
        elif inside:
            break
    return rows


def modules(root: Path) -> dict[str, Path]:
    """``optforge``'s modules under ``root``, named relative to the package (``""``: its
    ``__init__``)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(name: str, tree: ast.AST, known: set[str], is_package: bool) -> set[str]:
    """The package modules ``name`` imports (with the packages above each one that importing
    it runs, except ``name``'s own)."""
    here = name.split(".") if name else []
    package = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                mod = ".".join(["optforge", *base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            if t == "optforge" or t.startswith("optforge."):
                rel = t.removeprefix("optforge").removeprefix(".")
                if rel in known:
                    found.add(rel)
    own = {".".join(here[:i]) for i in range(len(here))}
    return {p for t in found for p in _with_parents(t) if p in known and p not in own} - {name}


def _with_parents(name: str) -> list[str]:
    parts = name.split(".") if name else []
    return [".".join(parts[:i]) for i in range(len(parts) + 1)]


def graph(root: Path) -> dict[str, set[str]]:
    mods = modules(root)
    return {m: imports(m, ast.parse(f.read_text()), set(mods), f.name == "__init__.py")
            for m, f in mods.items()}


def layer_of(module: str, rows: Rows) -> int | None:
    """The row of ``module``: the one naming the module or the closest package above it
    (the package's own ``__init__`` is ``__init__``)."""
    name = module or "__init__"
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        for k, (names, _) in enumerate(rows):
            if ".".join(parts[:i]) in names:
                return k
    return None


def below(rows: Rows) -> dict[int, set[int]]:
    """The rows each row rests on, directly or through others."""
    index = {n: k for k, (names, _) in enumerate(rows) for n in names}
    out = {}
    for k in range(len(rows)):
        seen, todo = set(), [index[n] for n in rows[k][1] if n in index]
        while todo:
            r = todo.pop()
            if r not in seen:
                seen.add(r)
                todo += [index[n] for n in rows[r][1] if n in index]
        out[k] = seen
    return out


def upward(g: dict[str, set[str]], rows: Rows) -> list[str]:
    """Every import that goes to a layer its module's row does not rest on."""
    under = below(rows)
    bad = []
    for m, targets in sorted(g.items()):
        lm = layer_of(m, rows)
        for t in sorted(targets):
            lt = layer_of(t, rows)
            if lm is not None and lt is not None and lt != lm and lt not in under[lm]:
                bad.append(f"{m or '__init__'} ({_name(rows, lm)}) imports "
                           f"{t or '__init__'} ({_name(rows, lt)})")
    return bad


def _name(rows: Rows, k: int) -> str:
    return ", ".join(sorted(rows[k][0]))


def circles(g: dict[str, set[str]], allowed: str = "lang") -> list[list[str]]:
    """Strongly connected sets of more than one module, except inside package ``allowed``
    (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 and not all(c.split(".")[0] == allowed for c in comp):
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def literals(tree: ast.AST) -> list[str]:
    """The module's string literals; an f-string as its constant parts joined, each
    formatted value read as ``{}``."""
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
             for v in node.values}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "{}"
                               for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in parts:
            out.append(node.value)
    return out


def sql_outside(root: Path, owner: str = "store") -> list[str]:
    """Modules under ``root`` outside package ``owner`` with SQL in a string literal."""
    bad = []
    for m, f in modules(root).items():
        if m.split(".")[0] == owner:
            continue
        bad += [f"{m}: {text.strip()[:60]!r}" for text in literals(ast.parse(f.read_text()))
                if SQL.search(text)]
    return bad


# ------------------------------------------------------------------ the checker, checked


TABLE = """
| layer | rests on | what |
|-------|----------|------|
| `base` | — | bottom |
| `mid`, `mid2` | `base` | middle |
| `top` | `mid` | |
| `top.shell` | `top`, `mid2` | |

after the table
"""


def test_the_checker_reads_the_table_and_finds_upward_imports_and_circles(tmp_path):
    rows = layer_table(TABLE)
    assert rows == [({"base"}, set()), ({"mid", "mid2"}, {"base"}), ({"top"}, {"mid"}),
                    ({"top.shell"}, {"top", "mid2"})]
    assert below(rows) == {0: set(), 1: {0}, 2: {0, 1}, 3: {0, 1, 2}}
    assert layer_of("top.shell.x", rows) == 3 and layer_of("top.y", rows) == 2
    assert layer_of("other", rows) is None
    files = {"base/__init__.py": "", "base/a.py": "from ..top import t  # up\n",
             "mid/__init__.py": "from . import m\n", "mid/m.py": "from ..base.a import x\n",
             "mid2.py": "def f():\n    from .mid import m  # sideways, lazily\n",
             "top/__init__.py": "", "top/t.py": "import optforge.base.a\n",
             "top/shell.py": "from ..mid2 import f\nfrom . import t\n",
             "lang/__init__.py": "", "lang/p.py": "from . import q\n",
             "lang/q.py": "from . import p\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    g = graph(tmp_path)
    assert g["mid.m"] == {"base", "base.a"}  # the package's __init__ runs first
    assert g["top.shell"] == {"mid2", "top.t"}
    assert upward(g, rows) == ["base.a (base) imports top (top)",
                               "base.a (base) imports top.t (top)"]  # mid2 -> mid: one layer
    rows[1] = ({"mid"}, {"base"})
    rows.insert(2, ({"mid2"}, {"base"}))
    assert upward(g, rows) == ["base.a (base) imports top (top)",
                               "base.a (base) imports top.t (top)",
                               "mid2 (mid2) imports mid (mid)", "mid2 (mid2) imports mid.m (mid)"]
    assert circles(g) == [["base.a", "top.t"]]  # lang's p <-> q is allowed
    assert circles(g, allowed="none") == [["base.a", "top.t"], ["lang.p", "lang.q"]]
    (tmp_path / "mid2.py").write_text("Q = 'SELECT x FROM evaluations'\n")
    assert sql_outside(tmp_path, owner="base") == ["mid2: 'SELECT x FROM evaluations'"]
    (tmp_path / "mid2.py").write_text("Q = f'SELECT {c} FROM {t}'\nR = f'{n} selected'\n")
    assert sql_outside(tmp_path, owner="base") == ["mid2: 'SELECT {} FROM {}'"]


# ------------------------------------------------------------------ the package


@pytest.fixture(scope="module")
def rows() -> Rows:
    table = layer_table(DOC.read_text())
    assert table, f"no '| layer | rests on |' table in {DOC}"
    return table


def test_the_layer_table_is_a_stack(rows):
    named = set().union(*(names for names, _ in rows))
    missing = set().union(*(under for _, under in rows)) - named
    assert not missing, f"rows rest on layers the table lacks: {missing}"
    loops = [_name(rows, k) for k, under in below(rows).items() if k in under]
    assert not loops, f"layers resting on themselves: {loops}"


def test_every_module_has_a_layer(rows):
    lost = [m or "__init__" for m in modules(SRC) if layer_of(m, rows) is None]
    assert not lost, f"modules in no layer of docs/ARCHITECTURE.md: {lost}"


def test_no_import_runs_back_up(rows):
    bad = upward(graph(SRC), rows)
    assert not bad, "imports against docs/ARCHITECTURE.md's layers:\n" + "\n".join(bad)


def test_no_import_circle_outside_lang():
    assert circles(graph(SRC)) == []


@pytest.mark.parametrize("root", [SRC, SRC.parents[1] / "experiments",
                                  SRC.parents[1] / "benchmarks"], ids=lambda p: p.name)
def test_no_sql_outside_the_store(root):
    assert sql_outside(root) == []
