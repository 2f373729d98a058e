"""The repository as a product: a built wheel carries the default model and finds it once installed, no file
refers to paths outside the repository, and the library has no import cycles (the CLI imports it, never the
reverse)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / line for line in out.stdout.splitlines()]


# Spelled in pieces, so that this file does not match them itself.
OUTSIDE = tuple(a + b for a, b in (("../", "shared"), ("shared/", "DESIGN"), ("shared/", "notes"), ("/wo", "rk/")))


def test_no_file_refers_to_paths_outside_the_repository():
    text_suffixes = {".py", ".md", ".yaml", ".yml", ".cfg", ".toml", ".txt", ".json", ""}
    offenders = []
    for path in tracked_files():
        if path.suffix not in text_suffixes or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="ignore")
        for needle in OUTSIDE:
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, offenders


def _module_graph() -> dict[str, set[str]]:
    """Every import (module level or inside functions) between the modules of videogen/ and pipelines/."""
    modules = {}
    for path in [*ROOT.joinpath("videogen").rglob("*.py"), *ROOT.joinpath("pipelines").rglob("*.py")]:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_no_import_cycles_and_the_cli_is_not_a_library():
    graph = _module_graph()
    assert not [m for m, deps in graph.items() if "videogen.cli" in deps], "library code imports the CLI"
    assert not [m for m in graph if m.startswith("videogen.convert") and
                any(d.startswith("videogen.models") for d in graph[m])], "converters import the models"
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_a_built_wheel_installs_with_the_default_model(tmp_path):
    """`pip wheel` (no editable install, no source tree): the wheel holds checkpoints/ as videogen/checkpoints, and
    a copy installed from it locates the embedded defaults and verifies their checksums."""
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheel_dir), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheel_dir.glob("videogen-*.whl")
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    sums = (ROOT / "checkpoints" / "shapes-t2v" / "SHA256SUMS").read_text().split("\n")
    listed = {f"videogen/checkpoints/shapes-t2v/{line.split('  ', 1)[1]}" for line in sums if line}
    assert listed and listed <= names, sorted(listed - names)
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                              "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = ("import videogen.loading as L; from videogen.integrity import verify_checkpoint; "
             "print(L.__file__); print(L.default_model_for(image=False)); print(L.default_model_for(image=True)); "
             "print(verify_checkpoint(L.default_model_for()))")
    env = dict(os.environ, PYTHONPATH=str(target))
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    module, t2v, i2v, checked = run.stdout.split()
    assert Path(module).is_relative_to(target)  # the installed copy, not this checkout
    assert Path(t2v) == target / "videogen" / "checkpoints" / "shapes-t2v"
    assert Path(i2v) == target / "videogen" / "checkpoints" / "shapes-t2v"  # one model for both tasks
    assert int(checked) >= 8
