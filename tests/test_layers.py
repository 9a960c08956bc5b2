"""The package's layers, read from its imports with ``ast``: no import cycle between
modules, nothing outside ``app/`` imports ``app/``, and each layer imports only the
layers below it."""

from __future__ import annotations

import ast
import os
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "idf_nvs_secure"

#: Each layer and the layers it may import (besides itself and the ground modules).
LAYERS: dict[str, set[str]] = {
    "formats": set(),
    "config": {"formats"},
    "inputs": {"formats"},
    "plan": {"formats", "config", "inputs"},
    "build": {"formats", "config", "inputs", "plan"},
    "views": {"formats", "config", "inputs", "plan", "build"},
    "release": {"formats", "config", "inputs", "plan", "build", "views"},
    "app": {"formats", "config", "inputs", "plan", "build", "views", "release"},
}
#: Modules every layer may use: errors and filesystem helpers, the package face.
GROUND = {"errors", "fsutil", "_version", "words"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The package modules ``path`` imports anywhere in it (module level, in functions,
    under TYPE_CHECKING alike: each is a dependency of the code)."""
    here = module_name(path).split(".") if module_name(path) else []
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "idf_nvs_secure":
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # "from . import x" may name a module
                candidate = ".".join([*target, alias.name])
                found.add(candidate if candidate in MODULES else ".".join(target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "idf_nvs_secure":
                    found.add(".".join(alias.name.split(".")[1:]))
    return {m for m in found if m in MODULES and m != module_name(path)}


MODULES = {module_name(p) for p in PKG.rglob("*.py")}
GRAPH = {module_name(p): imports_of(p) for p in PKG.rglob("*.py")}


def _layer(module: str) -> str:
    return module.split(".")[0] if module else ""


def test_no_import_cycle() -> None:
    # Tarjan's strongly connected components; a component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in GRAPH[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert cycles == []


def test_library_never_imports_app() -> None:
    wrong = {m: sorted(d for d in deps if _layer(d) == "app")
             for m, deps in GRAPH.items() if _layer(m) not in ("app", "__main__")}
    assert {m: d for m, d in wrong.items() if d} == {}


def test_layers_import_only_downwards() -> None:
    wrong = {}
    for module, deps in GRAPH.items():
        layer = _layer(module)
        if layer not in LAYERS:
            continue
        bad = sorted(d for d in deps if _layer(d) not in LAYERS[layer] | {layer} | GROUND)
        if bad:
            wrong[module] = bad
    assert wrong == {}


def test_ground_modules_import_nothing_above() -> None:
    for module in GROUND & MODULES:
        assert GRAPH[module] <= GROUND, module


def test_the_graph_is_read() -> None:
    # A guard on the reader itself: known edges must be seen.
    assert "formats.nvs_layout" in GRAPH["formats.nvs_image"]
    assert "plan.security" in GRAPH["build.artifacts"] or any(
        d.startswith("plan.") for d in GRAPH["build.artifacts"])


def test_nvs_build_loads_no_reader_yaml_or_kconfig(tmp_path) -> None:
    # `nvs build VALUES.csv` is what a single-image user waits for: running it must not
    # load the image reader, inspection views, YAML machinery, schemas or Kconfig.
    import subprocess
    import sys

    values = tmp_path / "v.csv"
    values.write_text("key,type,encoding,value\nns,namespace,,\nk,data,u8,1\n")
    code = ("import sys\nfrom idf_nvs_secure.app.cli import cli\n"
            f"cli.main(['nvs', 'build', {str(values)!r}, '--size', '0x3000', '-o', "
            f"{str(tmp_path / 'o.bin')!r}], standalone_mode=False)\n"
            "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "IDF_PATH"})
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "o.bin").is_file()
    loaded = set(run.stderr.split())
    heavy = {"idf_nvs_secure.formats.nvs_reader", "idf_nvs_secure.views.inspect", "yaml",
             "jsonschema", "idf_nvs_secure.config.sdkconfig", "kconfiglib", "esp_kconfiglib"}
    assert not heavy & loaded, sorted(heavy & loaded)
