"""Class names in the package: no two public classes share a name, and none is lowercase."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import defaultdict

import octanomaly


def _classes() -> dict[str, list[str]]:
    """Every class defined in an octanomaly module: name -> the modules defining one."""
    found: dict[str, list[str]] = defaultdict(list)
    for info in pkgutil.walk_packages(octanomaly.__path__, "octanomaly."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                found[name].append(module.__name__)
    return found


def test_no_two_public_classes_share_a_name() -> None:
    classes = _classes()
    assert len(classes) > 50  # the walk saw the package
    shared = {n: m for n, m in classes.items() if not n.startswith("_") and len(m) > 1}
    assert shared == {}


def test_class_names_are_capitalised() -> None:
    lower = {n: m for n, m in _classes().items() if not n.lstrip("_")[:1].isupper()}
    assert lower == {}
