"""Worker sizing: a memory cap and a CPU cap, proposed separately so the decision names the one that decided."""

from __future__ import annotations

from stevedores import WorkerProposal

from .resources import CpuQuota, MemoryLimit


def memory_proposal(limit: MemoryLimit, worker_memory_mb: int) -> WorkerProposal:
    """At most limit / per-worker budget workers (512MB / 64MB = 8, as the deployment guide says)."""
    by_memory = limit.mb // worker_memory_mb
    return WorkerProposal(by_memory, f"memory: {limit.mb}MB ({limit.source}) / {worker_memory_mb}MB per worker",
                          {"Container Memory": f"{limit.mb}MB", "Max Workers by Memory": str(by_memory)})


def cpu_proposal(quota: CpuQuota) -> WorkerProposal:
    """At most 2 x quota-aware CPUs + 1 workers."""
    by_cpu = 2 * quota.cpus + 1
    shown = f"{quota.cpus}" if quota.exact is None else f"{quota.cpus} (quota {quota.exact:g})"
    return WorkerProposal(by_cpu, f"CPU: 2 x {quota.cpus} CPUs ({quota.source}) + 1",
                          {"CPU Cores": shown, "Max Workers by CPU": str(by_cpu)})
