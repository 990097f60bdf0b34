"""The public surface: ``__all__`` of the package and of its stable public modules."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from types import ModuleType

import pytest

import dicommove

#: Public modules whose ``__all__`` is checked (the engine, store SCP, query and progress
#: modules are left out while they are being rewritten).
PUBLIC_MODULES = (
    "dicommove.errors",
    "dicommove.node",
    "dicommove.manifest",
    "dicommove.journal",
    "dicommove.cli",
)


def ruff_sort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps ``__all__`` in: CONSTANTS, then Classes, then the rest."""
    if len(name) > 1 and name.isupper():
        return 0, name
    if name[0].isupper():
        return 1, name
    return 2, name


def check_all(module: ModuleType) -> list[str]:
    """Check ``module.__all__`` is a sorted, duplicate-free list of str; return it."""
    names = module.__all__
    assert isinstance(names, list) and names, f"{module.__name__}.__all__ is empty"
    assert all(isinstance(name, str) for name in names)
    assert len(set(names)) == len(names), f"duplicates in {module.__name__}.__all__"
    assert names == sorted(names, key=ruff_sort_key), f"{module.__name__}.__all__ is not sorted"
    return list(names)


def test_package_all_is_sorted_and_unique() -> None:
    check_all(dicommove)


@pytest.mark.parametrize("name", dicommove.__all__)
def test_package_all_names_resolve(name: str) -> None:
    assert getattr(dicommove, name) is not None


def test_dir_lists_every_public_name_before_it_is_loaded() -> None:
    """In a fresh interpreter, where the lazy names are not loaded yet, dir() has them all."""
    code = (
        "import json, dicommove\n"
        "print(json.dumps([sorted(set(dicommove.__all__) - set(dir(dicommove))),"
        " sorted(set(dicommove.__all__) - set(vars(dicommove)))]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    missing, not_loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert missing == []
    assert "move" in not_loaded  # lazy: so dir() must name it itself


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        _ = dicommove.nonsense


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_module_all_names_exist(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in check_all(module):
        assert hasattr(module, name), f"{module_name}.__all__ names {name!r}, which it lacks"


def test_every_error_is_exported_from_the_package() -> None:
    from dicommove import errors

    for name in errors.__all__:
        assert name in dicommove.__all__
        assert getattr(dicommove, name) is getattr(errors, name)


def heavy_modules_after(*statements: str) -> list[str]:
    """Run ``statements`` in a fresh interpreter; return which heavy modules it loaded."""
    code = "\n".join(
        (
            "import json, sys",
            *statements,
            "heavy = ('pandas', 'pydicom', 'pynetdicom')",
            "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))",
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_import_is_light() -> None:
    """``import dicommove`` alone loads neither pydicom, pynetdicom nor pandas."""
    assert heavy_modules_after("import dicommove") == []


def test_the_probe_sees_a_heavy_module() -> None:
    assert heavy_modules_after("import dicommove", "import pandas") == ["pandas"]
