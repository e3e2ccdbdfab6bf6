"""The import rules of docs/ARCHITECTURE.md, checked: every row of its "What may import what" table.

The runtime runs artifacts without torch (a Jetson or a CPU box has none); the base modules
(vocabulary, errors, files, console, optional) import nothing heavy; the model code never
reaches into the runtime, export or CLI. The table is read from the document itself, so the
document and the code cannot drift apart unnoticed.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

RUNTIME_MODULES = [
    "dav2.vocabulary",
    "dav2.optional",
    "dav2.metadata",
    "dav2.processing",
    "dav2.media",
    "dav2.cli",
    "dav2.cli.export",  # a command module may be imported without its heavy libraries
    "dav2.export.context",
    "dav2.export.target",
    "dav2.export.tensorrt",  # `dav2-export --trt --from` on a Jetson without PyTorch
    "dav2.runtime.pipeline",
    "dav2.runtime.session",
    "dav2.runtime.sources",
    "dav2.runtime.sinks",
    "dav2.runtime.fps",
    "dav2.runtime.backends",
    "dav2.runtime.backends.onnxruntime",
    "dav2.runtime.backends.openvino",
    "dav2.runtime.backends.tensorrt",
    "dav2.runtime.viewer",  # the 3D view on a Jetson: rerun-sdk and numpy, no PyTorch
    "dav2.geometry",
    "dav2.geometry.intrinsics",
    "dav2.geometry.pointcloud",
    "dav2.geometry.anchors",
    "dav2.ros2.messages",  # the bag's and the node's message builders: numpy and OpenCV
]


def imported_after(modules: list[str]) -> set[str]:
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_runtime_modules_do_not_import_torch():
    loaded = imported_after(RUNTIME_MODULES)
    assert "torch" not in loaded
    imported_where_used = {"openvino", "tensorrt", "gradio", "ray", "modelopt", "rerun", "plyfile", "rosbags", "rclpy"}
    assert not imported_where_used & loaded


@pytest.mark.parametrize("module", ["dav2.vocabulary", "dav2.errors", "dav2.files", "dav2.console", "dav2.optional"])
def test_base_modules_import_only_the_standard_library(module):
    loaded = imported_after([module])
    assert not {"numpy", "cv2", "click", "onnxruntime"} & loaded
    assert {m for m in loaded if m.startswith("dav2.")} <= {module, "dav2.errors", "dav2.vocabulary"}


# ---- the table in docs/ARCHITECTURE.md, read and checked row by row ----

ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
NAME = re.compile(r"`([A-Za-z_][\w.]*)`")


def table_rows() -> list[tuple[list[str], set[str], set[str]]]:
    """(packages, may import, never imports) per row; only `backticked` names count."""
    text = ARCHITECTURE.read_text(encoding="utf-8").split("## What may import what", 1)[1]
    rows = []
    for line in text.splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] in ("package", "---"):
            continue
        rows.append((NAME.findall(cells[0]), set(NAME.findall(cells[1])), set(NAME.findall(cells[2]))))
    return rows


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(every module it imports anywhere, the top-level names it imports at module level)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    anywhere, module_level = set(), set()
    functions = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    lazy = {id(node) for function in functions for node in ast.walk(function)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "dav2":  # from dav2 import processing
                names += [f"dav2.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        anywhere.update(n for n in names if n != "dav2")
        if id(node) not in lazy:
            module_level.update(n.split(".")[0] for n in names if not n.startswith("dav2"))
    return anywhere, module_level


def within(module: str, names: set[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in names)


def names_module(package: str, module: str) -> bool:
    """A row's `dav2` means the package's own __init__ only; `dav2.x` means dav2.x and below."""
    return module == package or (package != "dav2" and module.startswith(package + "."))


def row_for(module: str, rows):
    """The row naming the module most specifically."""
    matches = [(len(package), row) for row in rows for package in row[0] if names_module(package, module)]
    return max(matches, key=lambda match: match[0])[1] if matches else None


def test_the_import_table_covers_every_module():
    rows = table_rows()
    assert len(rows) >= 8
    missing = [module_name(p) for p in sorted((ROOT / "dav2").rglob("*.py")) if row_for(module_name(p), rows) is None]
    assert not missing, f"no row of the import table in docs/ARCHITECTURE.md names {missing}"


def test_every_module_imports_only_what_its_row_allows():
    """`may import` lists every dav2 package a module imports (anywhere) and every third-party
    library it imports at module level (others only inside functions, lazily); `never imports`
    names what it must not import: a dav2 package anywhere, a library at module level."""
    rows = table_rows()
    stdlib = set(sys.stdlib_module_names)
    broken = []
    for path in sorted((ROOT / "dav2").rglob("*.py")):
        module = module_name(path)
        packages, may, never = row_for(module, rows)
        own = next(p for p in sorted(packages, key=len, reverse=True) if names_module(p, module))
        anywhere, module_level = imports_of(path)
        for name in sorted(anywhere):
            if name.startswith("dav2.") and not within(name, may | {own}):
                broken.append(f"{module} imports {name}: not in its row's 'may import'")
            if name.startswith("dav2.") and within(name, never):
                broken.append(f"{module} imports {name}: its row says never")
        for name in sorted(module_level - stdlib):
            if name not in may or name in never:
                broken.append(f"{module} imports {name} at module level: not allowed by its row")
    assert not broken, "\n".join(broken)


def test_the_import_check_catches_a_forbidden_import(tmp_path):
    """The checker itself: a models module importing the runtime, or torch at the runtime's
    module level, is reported."""
    rows = table_rows()
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom dav2.runtime import pipeline\n")
    anywhere, module_level = imports_of(bad)
    _, may_models, never_models = row_for("dav2.models.dpt", rows)
    assert "dav2.runtime" in anywhere and within("dav2.runtime", never_models)
    _, may_runtime, never_runtime = row_for("dav2.runtime.pipeline", rows)
    assert "torch" in module_level and "torch" not in may_runtime
