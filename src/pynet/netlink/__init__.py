"""pynet.netlink: link, address, route and sysctl helpers over pyroute2.

The only package (with two proxy backends) that imports pyroute2, always lazily, so importing
``pynet.netlink`` costs nothing until a handle is opened (pyroute2's import takes ~200 ms).
Namespaces are reached with ``IPRoute(netns=path, flags=0)``; nothing here calls ``setns`` in the
caller's process (per-netns sysctls go through :func:`pynet.netlink.sysctl.write_in_netns`).
"""

from __future__ import annotations

__all__ = ["addrs", "errors", "handle", "links", "sysctl"]
