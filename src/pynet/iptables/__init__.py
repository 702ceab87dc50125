"""pynet.iptables: a thin typed layer over iptables-restore/-save and ipset, with a fake for tests.

* :mod:`restore`: :class:`RestoreInput`, the ``--noflush`` transaction builder (declare/flush, -A, -X);
* :mod:`runner`: :class:`Iptables` runs restore/save for one family and variant via an injected Exec;
* :mod:`variant`: nf_tables vs legacy detection (``iptables --version``) with an override;
* :mod:`ipset`: :class:`Ipset`, create/diff/destroy the ``pynet-`` sets;
* :mod:`save`: iptables-save parser; :mod:`fake`: :class:`FakeIptables` (also fakes ipset).

python-iptables (iptc) drives only the legacy variant, so everything here goes through the tools.
"""

from __future__ import annotations

from pynet.iptables.errors import IptablesError, ParseError
from pynet.iptables.exec import Exec, ExecResult, netns_exec, subprocess_exec
from pynet.iptables.fake import FakeIptables
from pynet.iptables.ipset import Ipset
from pynet.iptables.restore import RestoreInput, Table, quote
from pynet.iptables.runner import Iptables
from pynet.iptables.save import SavedRule, SavedTable, jump_target, parse_save, split_args
from pynet.iptables.variant import ENV_OVERRIDE, Tools, Variant, detect_variant, tools_for

__all__ = [
    "ENV_OVERRIDE",
    "Exec",
    "ExecResult",
    "FakeIptables",
    "Ipset",
    "Iptables",
    "IptablesError",
    "ParseError",
    "RestoreInput",
    "SavedRule",
    "SavedTable",
    "Table",
    "Tools",
    "Variant",
    "detect_variant",
    "jump_target",
    "netns_exec",
    "parse_save",
    "quote",
    "split_args",
    "subprocess_exec",
    "tools_for",
]
