"""Whether a script starts a sweep at its top level, outside ``if __name__ ==
"__main__":``: workers that import the script to find its function would each
start the sweep again. Read from the source, never run."""

from __future__ import annotations

import ast

#: the calls of the API that start or queue a sweep
_STARTERS = {"run", "start", "submit"}


def unguarded_sweep_call(source: str) -> bool:
    """True when a top-level statement of ``source`` (not a definition, not under
    ``if __name__ == "__main__":``) calls ``ttg.run``, ``ttg.start`` or ``ttg.submit``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False  # importing it fails with its own message
    modules, names = _imports(tree)
    for stmt in _top_level(tree.body):
        for node in _executed(stmt):
            if isinstance(node, ast.Call) and _starts(node.func, modules, names):
                return True
    return False


def _imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """The names ``ttg`` is bound to, and those its starters are bound to."""
    modules, names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "ttg"}
        elif isinstance(node, ast.ImportFrom) and node.module == "ttg":
            names |= {a.asname or a.name for a in node.names if a.name in _STARTERS}
    return modules, names


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.If) and _is_main_guard(stmt.test):
            out += _top_level(stmt.orelse)
        else:
            out.append(stmt)
    return out


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def _executed(node: ast.AST) -> list[ast.AST]:
    """The nodes of a statement that run with it: not the bodies of what it defines."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
        return []
    out = [node]
    for child in ast.iter_child_nodes(node):
        out += _executed(child)
    return out


def _starts(func: ast.expr, modules: set[str], names: set[str]) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr in _STARTERS and isinstance(func.value, ast.Name) and func.value.id in modules
    return isinstance(func, ast.Name) and func.id in names
