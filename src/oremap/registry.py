"""One registry helper for every part chosen by name: networks, ensemble rules, baselines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from oremap.errors import UnknownNameError
from oremap.names import check_registered

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Names to implementations, in registration order, checked against declared names.

    A dict (``name in registry``, ``registry[name]``, ``list(registry)``) that is filled by
    the :meth:`register` decorator and checked by :meth:`check_declared` against the names
    :mod:`oremap.names` declares, so the configuration, the documentation and the code agree.

    Parameters
    ----------
    kind : str
        What the names are, for messages: ``"model"``, ``"ensemble rule"``, ``"baseline"``.
    declared : sequence of str
        The names :mod:`oremap.names` declares for this kind.
    """

    def __init__(self, kind: str, declared: Sequence[str]) -> None:
        super().__init__()
        self.kind = kind
        self.declared = tuple(declared)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding an implementation under ``name``.

        Raises
        ------
        ValueError
            If ``name`` is already registered (a programming error).
        """

        def add(item: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self[name] = item
            return item

        return add

    def lookup(self, name: str) -> T:
        """The implementation of ``name``; UnknownNameError naming the choices otherwise."""
        if name not in self:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; choose from {sorted(self)}")
        return self[name]

    def check_declared(self, *, ordered: bool = False) -> None:
        """Raise RuntimeError unless the registered names are the declared ones (and, with
        ``ordered``, in the declared order)."""
        check_registered(self.kind, self.declared, self, ordered=ordered)
