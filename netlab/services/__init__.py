"""Kubernetes Services on a netlab cluster: kube-proxy, cluster DNS, workloads, manifests.

Pure (no kernel, no lab record):

- :mod:`.allocate`: ClusterIP and NodePort allocation
- :mod:`.kubeproxy`: kube-proxy's iptables rules for one node (text)
- :mod:`.kubeproxy_nft`: kube-proxy's nftables mode: the ``ip kube-proxy`` table for one node (nft -f text)
- :mod:`.ipvs`: kube-proxy's IPVS mode: the virtual servers a node has, its nat rules
- :mod:`.endpoints`: which pods back which Service; DNS records and resolv.conf text
- :mod:`.upstream`: the resolver the cluster DNS forwards to (the internet's): its records, a node's resolv.conf

A running lab:

- :mod:`.records`: what the lab record keeps for Services, typed
- :mod:`.cluster`: the phase that starts Services, and ``sync`` when anything changes
- :mod:`.pods`: pods added and removed (the datapath's own operations), deployments
- :mod:`.processes`: the servers pods run; :mod:`.files`: resolv.conf and DNS records
- :mod:`.manifests`: real Kubernetes manifests (v1 Service, v1 Pod, apps/v1 Deployment)

Programs run inside pods, by file, importing only the standard library and dnslib:
:mod:`.dns` (the cluster DNS, answering as CoreDNS does), :mod:`.authdns` (the internet's DNS),
:mod:`.workload` (the hostname server),
:mod:`.client` (what ``netlab requests`` runs).

The Service *schema* is part of the model (:mod:`netlab.model.service`): a topology file
declares Services, and the model validates them before anything is built.
"""
