"""pynet.nft: a small typed layer over libnftables (a Python port of knftables' ideas).

* :mod:`objects`: Table/Chain/Rule/Set/Map/Element values rendered into the nft language;
* :mod:`transaction`: an ordered, sticky-error batch of operations on one table (``str()`` = the text);
* :mod:`runner`: :class:`Nft` applies a transaction atomically through the ``nftables`` module;
* :mod:`fake`: :class:`FakeNft`, the same interface in memory, for unit tests;
* :mod:`errors`: :class:`NftError` and the ``is_not_found``/``is_already_exists``/``is_busy`` predicates.
"""

from __future__ import annotations

from pynet.nft.errors import NftError, NftUnavailable, is_already_exists, is_busy, is_not_found
from pynet.nft.fake import FakeNft
from pynet.nft.objects import Chain, Element, Map, Rule, Set, Table, check_name
from pynet.nft.runner import Nft, NftInterface, probe
from pynet.nft.transaction import Operation, Transaction

__all__ = [
    "Chain",
    "Element",
    "FakeNft",
    "Map",
    "Nft",
    "NftError",
    "NftInterface",
    "NftUnavailable",
    "Operation",
    "Rule",
    "Set",
    "Table",
    "Transaction",
    "check_name",
    "is_already_exists",
    "is_busy",
    "is_not_found",
    "probe",
]
