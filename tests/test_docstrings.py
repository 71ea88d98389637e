"""Every parameter of a public class is documented once, under its own name.

As scikit-learn's ``test_docstring_parameters``: the numpydoc ``Parameters``
section of each public class whose ``__init__`` is the package's own lists
exactly that signature's parameters (``**kwargs`` included). The estimators'
merged signatures (:mod:`slicelearn._params`) are what is checked.
"""

from __future__ import annotations

import importlib
import inspect

import pytest
from numpydoc.docscrape import ClassDoc
from test_docs import PUBLIC_MODULES


def _public_classes() -> dict[str, type]:
    found: dict[str, type] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not inspect.isclass(obj) or issubclass(obj, BaseException):
                continue
            # Classes that inherit their __init__ (a torch module, a skorch
            # callback, a named tuple) are documented where it is defined.
            if not getattr(obj.__init__, "__module__", "").startswith("slicelearn"):
                continue
            found.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return found


CLASSES = _public_classes()


def _signature_names(cls: type) -> list[str]:
    names = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self":
            continue
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        names.append(prefix + p.name)
    return names


def test_the_estimators_are_among_the_checked_classes():
    names = {name.rsplit(".", 1)[1] for name in CLASSES}
    assert {
        "SliceCNNRegressor",
        "SliceCNNClassifier",
        "SliceLinearRegressor",
        "SliceLinearClassifier",
        "SliceNet",
        "VolumePreprocessor",
        "VolumeAugmenter",
    } <= names


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_init_parameters_are_documented_once(name):
    cls = CLASSES[name]
    documented = [
        part.strip().replace("\\*", "*")
        for entry in ClassDoc(cls, config={"show_class_members": False})["Parameters"]
        for part in entry.name.split(",")  # "a, b : int" documents two names
    ]
    duplicated = sorted({n for n in documented if documented.count(n) > 1})
    assert not duplicated, f"{name}: documented twice: {duplicated}"
    expected = _signature_names(cls)
    missing = [n for n in expected if n not in documented]
    extra = [n for n in documented if n not in expected]
    assert not missing and not extra, f"{name}: undocumented {missing}; not parameters {extra}"
