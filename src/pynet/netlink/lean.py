"""Import only the parts of pyroute2 the CNI plugin uses (a short-lived process's start-up cost).

``import pyroute2`` runs the package ``__init__``, which imports every pyroute2 API (NDB, IPDB,
IPVS, nl80211, plan9 ...): about 200 ms here, before any work. Submodule imports cannot skip it.
:func:`lean_pyroute2` installs a stand-in ``pyroute2`` package module whose ``__path__`` is the real
one, so ``import pyroute2.iproute.linux`` loads just that module tree (several times cheaper).

Safety: the stand-in completes itself on demand: the first access to a name it lacks
(``from pyroute2 import IPVS``) runs the real ``__init__`` inside it, so later imports by other code
still see the full API. Call it first thing in a fresh process (the in-process plugin does); it
does nothing when pyroute2 is already imported. pynet's own modules import pyroute2 names from
their submodules (``pyroute2.iproute.linux``, ``pyroute2.netlink.exceptions``), which works either way.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

__all__ = ["lean_pyroute2"]


def lean_pyroute2() -> bool:
    """Install the stand-in; True if installed (False: already imported or not installed)."""
    if "pyroute2" in sys.modules:
        return False
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None or spec.loader is None:
        return False
    mod = types.ModuleType("pyroute2")
    mod.__path__ = list(spec.submodule_search_locations)
    mod.__spec__ = spec
    mod.__file__ = spec.origin
    mod.__package__ = "pyroute2"
    loader = spec.loader

    def complete(name: str) -> Any:
        # `from pyroute2 import config` asks for a submodule: import just that.
        if not name.startswith("__") and importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")
        # Someone wants the package-level API: run the real __init__ in this very module, once.
        mod.__dict__.pop("__getattr__", None)
        loader.exec_module(mod)
        return getattr(mod, name)

    mod.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules["pyroute2"] = mod
    return True
