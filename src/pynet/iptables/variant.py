"""Which iptables: the nf_tables variant or the legacy one, and the matching tool names.

Both can coexist in a kernel and do not see each other's rules, so pynet must drive the same variant
that the machine's ``iptables`` command shows operators. Detection asks ``iptables --version`` (it prints
``(nf_tables)`` or ``(legacy)``); an explicit override (constructor argument or the
``PYNET_IPTABLES_VARIANT`` environment variable: ``nft`` or ``legacy``) wins. Which one was used is logged.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from pynet._log import get_logger
from pynet.iptables.errors import IptablesError
from pynet.iptables.exec import Exec

__all__ = ["ENV_OVERRIDE", "Tools", "Variant", "detect_variant", "tools_for"]

ENV_OVERRIDE = "PYNET_IPTABLES_VARIANT"
log = get_logger("pynet.iptables")


class Variant(enum.StrEnum):
    NFT = "nft"
    LEGACY = "legacy"


@dataclass(frozen=True, slots=True)
class Tools:
    variant: Variant
    family: int  # 4 or 6
    iptables: str
    restore: str
    save: str


def tools_for(variant: Variant, family: int) -> Tools:
    base = "iptables" if family == 4 else "ip6tables"
    return Tools(variant, family, f"{base}-{variant.value}", f"{base}-{variant.value}-restore",
                 f"{base}-{variant.value}-save")


def detect_variant(exec: Exec, override: str | None = None) -> Variant:
    """The variant to drive: ``override``, else $PYNET_IPTABLES_VARIANT, else what ``iptables`` is."""
    choice = override or os.environ.get(ENV_OVERRIDE) or ""
    if choice:
        try:
            variant = Variant(choice.lower())
        except ValueError:
            raise IptablesError(f"unknown iptables variant {choice!r}; use 'nft' or 'legacy'") from None
        log.info("iptables variant chosen by override: %s", variant.value)
        return variant
    res = exec(["iptables", "--version"])
    if res.returncode != 0:
        raise IptablesError(f"`iptables --version` failed: {res.stderr.strip()}", returncode=res.returncode)
    if "(nf_tables)" in res.stdout:
        variant = Variant.NFT
    elif "(legacy)" in res.stdout or res.stdout.strip().startswith("iptables v1.6"):
        variant = Variant.LEGACY
    else:
        raise IptablesError(f"cannot tell the iptables variant from {res.stdout.strip()!r}")
    log.info("iptables variant detected: %s (%s)", variant.value, res.stdout.strip())
    return variant
