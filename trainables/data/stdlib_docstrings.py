"""The docstrings of standard-library modules, collected in a child process (run as a script).

Importing a few hundred modules has side effects no data pipeline should inherit (state in
``sys.modules``, signal handlers, output written straight to the terminal), and an import could in
principle block. So :mod:`trainables.data.text_corpus` runs this file as a script, with ``python -I
-S`` (only the standard library on ``sys.path``, no environment variables, nothing from
site-packages can shadow a stdlib module), stdin and stdout closed, a timeout per import and for
the whole run; the script writes ``[[module, source, docstring], ...]`` as JSON to the path it is
given. It imports nothing but the standard library, so it can run without this project installed.

What is collected, for each top-level module named on the command line, in sorted order: the
docstring of the module and of each public submodule (recursively), then of each public function,
class and class attribute (methods, properties, slots) defined there, each object once. "Public"
means no name component starts with ``_`` or ``test``. A member counts as defined in a module when
its ``__module__`` is that module or the module's private accelerator (``heapq.heappush`` lives
in ``_heapq``), so re-exports (``os.path`` is ``posixpath``; ``cgi`` imports ``io.TextIOWrapper``)
are collected once, where they are defined.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import os
import pkgutil
import signal
import sys
import warnings
from types import ModuleType
from typing import Iterator

# Opens windows or a browser, prints on import, or is the test suite.
SKIPPED = frozenset({"antigravity", "idlelib", "this", "tkinter", "turtle", "turtledemo", "test"})
# Packages whose submodules are generated boilerplate (one codec table each), not prose.
UNWALKED = frozenset({"encodings"})
IMPORT_TIMEOUT_S = 10


def stdlib_modules() -> list[str]:
    """The public top-level standard-library modules, sorted."""
    return sorted(name for name in sys.stdlib_module_names if is_public(name) and name not in SKIPPED)


def is_public(dotted: str) -> bool:
    """No part of the dotted name is private or a test package."""
    return not any(part.startswith(("_", "test")) for part in dotted.split("."))


def import_quietly(name: str) -> ModuleType | None:
    """The module, or None if importing it fails or takes too long; anything it prints is swallowed."""

    def timeout(signum: int, frame: object) -> None:
        raise TimeoutError(f"importing {name} took over {IMPORT_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(IMPORT_TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return importlib.import_module(name)
    except BaseException:  # SystemExit and the TimeoutError too: no module may end or stall the run
        return None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def walk(module: ModuleType) -> Iterator[ModuleType]:
    """The module and its public submodules, depth first, in sorted order."""
    yield module
    if module.__name__ in UNWALKED or not hasattr(module, "__path__"):
        return
    for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda info: info.name):
        name = f"{module.__name__}.{info.name}"
        submodule = import_quietly(name) if is_public(name) else None
        if submodule is not None:
            yield from walk(submodule)


def defined_in(value: object, module: ModuleType) -> bool:
    """Whether ``module`` (or its private accelerator, ``_heapq`` for ``heapq``) defines ``value``."""
    home = getattr(value, "__module__", None)
    return isinstance(home, str) and home.lstrip("_") == module.__name__


def documented(module: ModuleType) -> Iterator[tuple[str, object]]:
    """(dotted name, object) for the module and its public functions, classes and class attributes."""
    yield module.__name__, module
    for name, value in sorted(vars(module).items()):
        if name.startswith("_") or not (inspect.isroutine(value) or inspect.isclass(value)) or not defined_in(value, module):
            continue
        yield f"{module.__name__}.{name}", value
        if inspect.isclass(value):
            for attribute, member in sorted(vars(value).items()):
                if not attribute.startswith("_") and (inspect.isroutine(member) or inspect.isdatadescriptor(member)):
                    yield f"{module.__name__}.{name}.{attribute}", member


def docstrings(names: list[str]) -> list[list[str]]:
    """[top-level module, dotted source, docstring] for every documented object, each object once."""
    seen: set[int] = set()
    found = []
    for top in names:
        module = import_quietly(top)
        for submodule in walk(module) if module is not None else ():
            for source, value in documented(submodule):
                doc = getattr(value, "__doc__", None)
                if isinstance(doc, str) and doc.strip() and id(value) not in seen:
                    seen.add(id(value))  # objects stay alive in their modules, so ids stay unique
                    found.append([top, source, doc])
    return found


def main(arguments: list[str]) -> None:
    """``stdlib_docstrings.py OUT.json MODULE...``: write the docstrings of MODULE... to OUT.json."""
    warnings.simplefilter("ignore")
    found = docstrings(arguments[1:])
    with open(arguments[0], "w", encoding="utf-8") as out:
        json.dump(found, out)


if __name__ == "__main__":
    main(sys.argv[1:])
    os._exit(0)  # skip atexit handlers and threads the imported modules may have left behind
