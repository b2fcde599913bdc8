"""Every global name a function of soar_orl reads exists in its module: a cheap static check
that catches what a merge can leave behind (a variable renamed or moved into another function),
which otherwise only fails when that line runs, often at the end of a long run."""

from __future__ import annotations

import builtins
import dis
import importlib
import pkgutil
import types

import soar_orl


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _module_names() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(soar_orl.__path__, "soar_orl."))


def undefined_globals(module: types.ModuleType) -> list[str]:
    source = module.__loader__.get_source(module.__name__)
    code = compile(source, module.__file__, "exec")
    known = set(vars(module)) | set(dir(builtins))
    missing = set()
    for block in _code_objects(code):
        for instruction in dis.get_instructions(block):
            if instruction.opname == "LOAD_GLOBAL" and instruction.argval not in known:
                missing.add(f"{block.co_name}: {instruction.argval}")
    return sorted(missing)


def test_no_function_reads_an_undefined_global() -> None:
    problems = {}
    for name in _module_names():
        missing = undefined_globals(importlib.import_module(name))
        if missing:
            problems[name] = missing
    assert not problems, problems


def test_the_check_finds_an_undefined_name() -> None:
    module = types.ModuleType("probe_module")
    module.__file__ = "probe_module.py"

    class Loader:
        @staticmethod
        def get_source(_name: str) -> str:
            return "def report(cfg):\n    return settings.samples\n"

    module.__loader__ = Loader()
    assert undefined_globals(module) == ["report: settings"]
