"""pynet: Kubernetes node networking in Python.

Two halves share this package: the CNI plugin (:mod:`pynet.cni`, executed by the container runtime
through ``cni-bin/pynet``) and the service agent (:mod:`pynet.daemon`, ``pynet agent``).
"""

__version__ = "0.1.0"
