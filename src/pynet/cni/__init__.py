"""pynet.cni: the CNI plugin (spec 1.1.0).

Modules (none is imported here: the launcher's fast path must stay stdlib-only and quick):

* ``skel``      environment/stdin/version gates/error JSON -> ``plugin_main(funcs, supported, about, ...)``
* ``types``, ``errors``, ``version``   spec values, error codes, supported versions
* ``config``    pynet's network config (reference bridge keys + ``mode`` + ``vxlan``)
* ``commands``  ADD/DEL/CHECK/GC/STATUS orchestration (``Commands(nsexec=...)``)
* ``drivers``   attachment drivers by mode (``bridge``, ``macvlan``) behind ``drivers.base.Driver``
* ``delegate``  IPAM delegation (exec from CNI_PATH, or in-process for ``pynet-ipam``)
* ``masq``      ipMasq records in the nftables table ``inet pynet-cni``
* ``client``, ``wire``, ``server``   the fast path: thin client in the launcher, ``CniServer`` in the agent
* ``main``      the plugin's entry point; ``ipam`` is pynet-ipam
"""

__all__: list[str] = []
