"""The package's public names: sorted, existing, complete, typed."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import smtp_guard

# Modules whose ``__all__`` is reachable from ``import smtp_guard`` by design. Everything else
# (cli, testing, contrib, bench helpers) is imported by its own path.
_EDGES = ("smtp_guard.cli", "smtp_guard.testing", "smtp_guard.contrib")


def _public_modules() -> list[ModuleType]:
    found = []
    for info in pkgutil.walk_packages(smtp_guard.__path__, "smtp_guard."):
        name = info.name
        is_edge = any(name == edge or name.startswith(edge + ".") for edge in _EDGES)
        if any(part.startswith("_") for part in name.split(".")) or is_edge:
            continue
        module = importlib.import_module(name)
        if hasattr(module, "__all__"):
            found.append(module)
    return found


def test_all_is_sorted_and_unique() -> None:
    names = list(smtp_guard.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in smtp_guard.__all__ if not hasattr(smtp_guard, name)]
    assert missing == []


def test_public_modules_are_found() -> None:
    names = {m.__name__ for m in _public_modules()}
    assert {"smtp_guard.errors", "smtp_guard.classify", "smtp_guard.replies"} <= names


@pytest.mark.parametrize("module", _public_modules(), ids=lambda m: m.__name__)
def test_module_all_is_sorted_and_its_names_exist(module: ModuleType) -> None:
    names = list(module.__all__)
    assert names == sorted(names), module.__name__
    assert [n for n in names if not hasattr(module, n)] == []


@pytest.mark.parametrize("module", _public_modules(), ids=lambda m: m.__name__)
def test_every_name_a_public_module_exports_is_exported_by_the_package(
    module: ModuleType,
) -> None:
    not_reexported = [
        name
        for name in module.__all__
        if getattr(smtp_guard, name, None) is not getattr(module, name)
    ]
    assert not_reexported == [], f"add to smtp_guard/__init__.py: {not_reexported}"


@pytest.mark.parametrize("module", _public_modules(), ids=lambda m: m.__name__)
def test_public_classes_and_functions_defined_in_a_module_are_in_its_all(
    module: ModuleType,
) -> None:
    defined_here = [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    ]
    assert sorted(set(defined_here) - set(module.__all__)) == []


def test_py_typed_is_in_the_package() -> None:
    assert (Path(smtp_guard.__file__).parent / "py.typed").is_file()


@pytest.mark.skipif(
    importlib.util.find_spec("hatchling") is None, reason="the build backend is not installed"
)
def test_the_wheel_ships_py_typed_catalogs_and_the_script(tmp_path: Path) -> None:
    root = Path(smtp_guard.__file__).parent.parent
    subprocess.run(  # noqa: S603 - our own interpreter and project
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert "smtp_guard/py.typed" in names
    for lang in ("cs", "de", "en", "fr"):
        assert f"smtp_guard/locale/{lang}/LC_MESSAGES/smtp_guard.mo" in names
    assert "smtp_guard/cli/explain.py" in names
    assert "smtp-guard = smtp_guard.cli:main" in scripts


def test_version_is_a_string() -> None:
    assert isinstance(smtp_guard.__version__, str)
    assert smtp_guard.__version__.count(".") >= 2
