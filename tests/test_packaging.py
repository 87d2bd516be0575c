"""A regular (non-editable) install ships every module and data file and runs the command line."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "cli", "engine", "model", "prompts", "tui")

# Run with -S: without site's .pth files the editable install of this checkout is invisible, so
# every import below must come from the wheel; the dependencies come from site-packages itself.
CHECK = """
import importlib, pkgutil, sys
sys.path[:0] = [WHEEL_DIR, *SITE]
import ratchet
SCRIPTS = {"ratchet.engine.runner.warm_child", "ratchet.model.train", "ratchet.model.prepare"}
names = [m.name for m in pkgutil.walk_packages(ratchet.__path__, "ratchet.")]
for name in names:
    if name in SCRIPTS:
        continue  # run as scripts (a child process, a workspace's files), not imported
    module = importlib.import_module(name)
    assert module.__file__.startswith(WHEEL_DIR), (name, module.__file__)
from importlib import resources
for package, data in (("ratchet.model", "prepare.py"), ("ratchet.model", "train.py"),
                      ("ratchet.model", "program.md"), ("ratchet.prompts", "claude_system.md"),
                      ("ratchet.prompts", "claude_code_system.md"), ("ratchet.tui", "app.tcss")):
    assert resources.files(package).joinpath(data).is_file(), (package, data)
print(len(names))
"""


@pytest.mark.slow
def test_wheel_installs_every_package(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(src)], check=True,
                   capture_output=True, timeout=240)
    (wheel,) = wheels.glob("ratchet-*.whl")
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    code = CHECK.replace("WHEEL_DIR", repr(str(installed))).replace(
        "SITE", repr(site.getsitepackages()))
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 40  # every subpackage's modules, not a stub
    cli = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path[:0] = "
                          f"[{str(installed)!r}, *{site.getsitepackages()!r}]; "
                          "from ratchet.cli.main import main; sys.exit(main(['--help']))"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "COMMAND" in cli.stdout, cli.stderr[-2000:]


def test_pyproject_lists_every_package_folder():
    # setuptools installs only the packages listed: a folder left out would be missing from the
    # wheel, and an entry without its folder would fail the build
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                rel = init.parent.relative_to(ROOT / folder)
                found.add(".".join([package, *rel.parts]))
    assert sorted(setuptools["packages"]) == sorted(found)
