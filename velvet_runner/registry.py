"""A registry of plug-in classes by kind: the vendors, the targets, the sandbox's fakes.

Each plug-in is a module of one package that registers its class on import; `load_all` imports
every module of the package once per process (so `velvet --help` imports none of them) and
answers the built-ins first, in the order given, then whatever registered later.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Collection
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, package: str, order: tuple[str, ...],
                 key: Callable[[type[T]], str], *, not_plugins: Collection[str] = ("base",)
                 ) -> None:
        self.what = what  # "vendor", "target", "fake": named in errors
        self.package = package
        self.order = order
        self.key = key
        self.not_plugins = frozenset(not_plugins)
        self.entries: dict[str, type[T]] = {}
        self._imported = False
        self._lock = threading.RLock()  # a plug-in that loads the others while importing

    def add(self, cls: type[T]) -> type[T]:
        kind = self.key(cls)
        if kind in self.entries:
            raise ValueError(f"{self.what} {kind} registered twice: {self.entries[kind]} and "
                             f"{cls}")
        self.entries[kind] = cls
        return cls

    def load_all(self) -> dict[str, type[T]]:
        self._import_modules()
        return {**{kind: self.entries[kind] for kind in self.order if kind in self.entries},
                **self.entries}

    def _import_modules(self) -> None:
        # Once per process: wiring looks an adapter up for every consumer of a fan-out.
        with self._lock:
            if self._imported:
                return
            package = importlib.import_module(self.package)
            for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                                 if m.name not in self.not_plugins):
                importlib.import_module(f"{self.package}.{module}")
            self._imported = True
