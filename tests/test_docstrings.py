"""Every library function a notebook calls says, in its docstring, which notebook section explains
it (as d2l's ``torch.py`` does), so a reader can go from the code back to the prose."""
from __future__ import annotations

import ast
import importlib
import inspect
import json
import re

from xlir_utils import paths

NOTEBOOKS = sorted((paths.project_root() / "notebooks").glob("0*.ipynb"))


def _resolve(dotted: str):
    """The object a dotted name refers to (the longest importable module prefix, then attributes)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


def _called_library_objects() -> dict[str, object]:
    """Every xlir_utils function or class a notebook's code cells call (``mod.f(...)`` or ``f(...)``)."""
    found: dict[str, object] = {}
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        tree = ast.parse(source)
        names: dict[str, str] = {}  # local name -> dotted target
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xlir_utils"):
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("xlir_utils"):
                        names[alias.asname or alias.name] = alias.name
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in names:
                dotted = names[func.id]
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in names:
                dotted = f"{names[func.value.id]}.{func.attr}"
            else:
                continue
            obj = _resolve(dotted)
            if obj is not None and (inspect.isfunction(obj) or inspect.isclass(obj)):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_notebooks_call_the_library():
    assert len(_called_library_objects()) > 30


def test_every_called_function_names_its_notebook_section():
    missing = [name for name, obj in _called_library_objects().items()
               if not re.search(r"[Nn]otebooks?\s+\d\d", inspect.getdoc(obj) or "")]
    assert not missing, f"docstrings without a notebook section: {sorted(missing)}"
