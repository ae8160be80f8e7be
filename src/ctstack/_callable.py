"""Make a module callable as its main function.

``ctstack.export`` and ``ctstack.mesh`` are both modules and the functions users call
(``ctstack.export(stack, ...)``). Importing a submodule rebinds the package attribute to the
module, so instead of fighting the import system the module itself forwards calls.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, func: Callable[..., Any]) -> None:
    """Let ``module(...)`` call ``func(...)`` for the already-imported module ``module_name``."""

    class _CallableModule(types.ModuleType):
        __doc__ = func.__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
