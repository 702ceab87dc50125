"""Putting pynet on a node: ``pynet install-cni`` (the DaemonSet's init container job).

- :mod:`pynet.deploy.install_cni`: the subcommand (plan, install, uninstall);
- :mod:`pynet.deploy.files`: atomic, idempotent file writes;
- :mod:`pynet.deploy.bundle`: the versioned host copy of the code the CNI launchers run.

The manifests, image recipe and Vagrant lab live in ``deploy/`` at the top of the repository.
"""

from __future__ import annotations

__all__: list[str] = []
