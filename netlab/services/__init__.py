"""Kubernetes Services on a netlab cluster: kube-proxy, cluster DNS, workloads, manifests.

- :mod:`.model`: the ``services:`` schema, checks, ClusterIP/NodePort allocation (pure)
- :mod:`.kubeproxy`: kube-proxy's iptables rules for one node (pure text)
- :mod:`.ipvs`: kube-proxy's IPVS mode through pyroute2
- :mod:`.dns`: a CoreDNS-like cluster DNS server (dnslib)
- :mod:`.workload`: the hostname server pods run (HTTP, TCP and UDP echo)
- :mod:`.cluster`: a running lab's services: endpoints, sync, pods added and removed
- :mod:`.manifests`: real Kubernetes manifests (v1 Service, v1 Pod, apps/v1 Deployment)

This module imports nothing, so :mod:`netlab.model` can import :mod:`.model` cheaply.
"""
