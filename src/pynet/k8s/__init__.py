"""Cluster state for the agent: Services, EndpointSlices and Nodes, validated, as events.

Two sources feed the same :class:`~pynet.k8s.events.ClusterHandler`: the manifest directory
(:mod:`pynet.k8s.manifests`) and the API informers (:mod:`pynet.k8s.informer` over
:mod:`pynet.k8s.client`, the only importer of ``kubernetes``). :mod:`pynet.k8s.convert` is the one
validation boundary. Nothing is imported here, so ``import pynet.k8s`` stays cheap.
"""

__all__: list[str] = []
