"""Import the base branch's decoder beside the pull request's: two versions of one package in one process.

``--specdec-base-path DIR`` names a folder that holds the base version's top-level package: a
second checkout of the repository (``git worktree add ../base origin/main``) or a wheel installed
into a folder (``pip install --no-deps --target DIR base.whl``). The package named by
``--specdec-base-impl`` (``mypkg`` in ``mypkg.decoding:make_decoder``) is then imported from
``DIR`` under the alias ``_specdec_base.mypkg``, while ``mypkg`` itself stays the pull request's:

- ``_specdec_base`` is a namespace whose search path is ``DIR``, so the base modules are found
  there, and their relative imports (``from .kv import CachedLM``) stay inside the base version.
- Absolute imports of the package from its own code (``import mypkg.kv``, ``from mypkg import x``,
  at module level or inside a function) are rewritten to the alias when a base module is
  compiled, so the base version never reaches into the pull request's code. Compiled code is
  never cached to disk: the base checkout's ``__pycache__`` is left as it was.
- Everything else (torch, transformers, and packages that are not the base package) is shared.

Values of the base package's own types cross the boundary on each call: an argument whose type
is defined in the pull request's version of the package (the reference's ``SamplingConfig``,
when the package under comparison is ``reference_impl``) is rebuilt as the base version's class
of the same name, field by field. Imports by string (``importlib.import_module("mypkg.x")``) are
not rewritten; a base package that does that must be installed under another name instead.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

ALIAS = "_specdec_base"


class BaseImportError(Exception):
    """The base decoder cannot be imported from the folder given; the message says what to fix."""


class _RewriteImports(ast.NodeTransformer):
    """``import pkg.x`` -> ``import ALIAS.pkg.x`` (binding ``pkg``), ``from pkg.x import y`` -> ``from ALIAS.pkg.x``."""

    def __init__(self, package: str) -> None:
        self.package = package

    def _ours(self, name: str | None) -> bool:
        return bool(name) and (name == self.package or name.startswith(self.package + "."))  # type: ignore[union-attr]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.level == 0 and self._ours(node.module):
            node.module = f"{ALIAS}.{node.module}"
        return node

    def visit_Import(self, node: ast.Import) -> Any:
        if not any(self._ours(alias.name) for alias in node.names):
            return node
        statements: list[ast.stmt] = []
        for alias in node.names:
            if not self._ours(alias.name):
                statements.append(ast.Import(names=[alias]))
            elif alias.asname:  # import pkg.x as y: y is the aliased submodule
                statements.append(ast.Import(names=[ast.alias(f"{ALIAS}.{alias.name}", alias.asname)]))
            else:  # import pkg.x binds pkg: bind it to the aliased top-level package
                statements.append(ast.Import(names=[ast.alias(f"{ALIAS}.{alias.name}")]))
                statements.append(ast.parse(f"{self.package} = __import__('{ALIAS}').{self.package}").body[0])
        return [ast.copy_location(s, node) for s in statements]


class _RewritingLoader(importlib.machinery.SourceFileLoader):
    """Compiles the base package's modules with their self-imports rewritten; never reads or writes bytecode."""

    package = ""

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        tree = ast.parse(self.get_data(path), filename=path)
        tree = ast.fix_missing_locations(_RewriteImports(self.package).visit(tree))
        return compile(tree, path, "exec", dont_inherit=True)


class _BaseFinder(importlib.abc.MetaPathFinder):
    """Finds ``ALIAS.<package>...`` modules under the base folder and loads them with ``_RewritingLoader``."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if not fullname.startswith(f"{ALIAS}.{self.package}"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec  # a compiled extension module: loaded as it is
        loader = type("Loader", (_RewritingLoader,), {"package": self.package})(fullname, spec.origin)
        return importlib.util.spec_from_file_location(
            fullname, spec.origin, loader=loader, submodule_search_locations=spec.submodule_search_locations)


def install(base_path: Path, package: str) -> None:
    """Make ``ALIAS.<package>`` import ``<package>`` from ``base_path`` (idempotent for the same folder)."""
    folder = Path(base_path).resolve()
    if not (folder / package).is_dir() and not (folder / f"{package}.py").is_file():
        raise BaseImportError(
            f"--specdec-base-path {base_path}: no package {package!r} there (looked for {folder / package}); point "
            "it at the base branch's checkout root (git worktree add DIR origin/main) or at a folder a wheel was "
            "installed into (pip install --no-deps --target DIR base.whl)")
    namespace = sys.modules.get(ALIAS)
    if namespace is not None and list(namespace.__path__) != [str(folder)]:
        raise BaseImportError(f"the base package is already imported from {namespace.__path__[0]}; one run "
                              f"compares against one base folder, not also {folder}")
    if namespace is None:
        namespace = types.ModuleType(ALIAS, "the base branch's packages, imported by pytest-specdec")
        namespace.__path__ = [str(folder)]  # type: ignore[attr-defined]
        sys.modules[ALIAS] = namespace
    if not any(isinstance(f, _BaseFinder) and f.package == package for f in sys.meta_path):
        sys.meta_path.insert(0, _BaseFinder(package))


def aliased_spec(spec: str, base_path: Path | None) -> str:
    """``mypkg.decoding:make`` -> ``_specdec_base.mypkg.decoding:make`` once the base folder is installed."""
    if base_path is None:
        return spec
    module, _, attr = spec.partition(":")
    install(base_path, module.split(".")[0])
    return f"{ALIAS}.{module}:{attr}"


def _to_base(value: Any, package: str) -> Any:
    """A value of a type from the pull request's ``package`` rebuilt as the base version's class of the same name."""
    cls = type(value)
    if cls.__module__.split(".")[0] != package or not dataclasses.is_dataclass(value):
        return value
    base_class = getattr(importlib.import_module(f"{ALIAS}.{cls.__module__}"), cls.__qualname__, None)
    if base_class is None or not dataclasses.is_dataclass(base_class):
        return value
    names = {f.name for f in dataclasses.fields(base_class) if f.init}
    return base_class(**{f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name in names})


class BaseDecoder:
    """The base branch's decoder: arguments of the pull request's package types cross to the base's."""

    def __init__(self, decoder: Any, package: str) -> None:
        self.inner = decoder
        self.package = package
        self.name = getattr(decoder, "name", type(decoder).__name__)

    def generate(self, input_ids: Any, **kwargs: Any) -> Any:
        return self.inner.generate(input_ids, **{k: _to_base(v, self.package) for k, v in kwargs.items()})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def load_base_factory(spec: str, base_path: Path | None) -> Any:
    """The base decoder's factory, ``--specdec-base-impl`` imported from ``--specdec-base-path`` when given;
    what it builds is wrapped in ``BaseDecoder``. A bad spec or folder is a usage error."""
    import pytest

    from .decoder import load_factory

    try:
        aliased = aliased_spec(spec, base_path)
    except BaseImportError as exc:
        raise pytest.UsageError(str(exc)) from None
    factory = load_factory(aliased, "--specdec-base-impl")
    package = spec.split(":")[0].split(".")[0]
    if base_path is None:
        return factory
    return lambda target, draft, **options: BaseDecoder(factory(target, draft, **options), package)
