"""Worker sizing: the core's rule for combining the plugins' proposals."""

from __future__ import annotations

from dataclasses import dataclass, field

from .contracts import WorkerProposal
from .settings import Config

DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class WorkerDecision:
    """The final worker count, every figure that led to it, and who decided."""

    final: int
    requested: int | None
    request_source: str | None
    proposals: list[tuple[str, WorkerProposal]] = field(default_factory=list)
    decided_by: str = "default"
    reason: str = ""

    def lines(self) -> list[str]:
        """The log lines of the decision, in the deployment guide's words."""
        out: list[str] = []
        for _plugin, proposal in self.proposals:
            out.extend(f"{label}: {value}" for label, value in proposal.figures.items())
        if self.requested is not None:
            out.append(f"Requested Workers: {self.requested} ({self.request_source})")
        out.append(f"Final Workers: {self.final} (decided by {self.decided_by}: {self.reason})")
        return out

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "final": self.final, "requested": self.requested, "request_source": self.request_source,
            "decided_by": self.decided_by, "reason": self.reason,
            "proposals": [{"plugin": p, "limit": w.limit, "reason": w.reason, "figures": dict(w.figures)}
                          for p, w in self.proposals],
        }


def decide_workers(config: Config, proposals: list[tuple[str, WorkerProposal]]) -> WorkerDecision:
    """Final = smallest of the request and every proposal, at least 1.

    The request is WEB_WORKERS, else WEB_CONCURRENCY; with neither and no proposal
    the core uses DEFAULT_WORKERS. Ties go to the request (the operator's word).
    """
    requested, source = config.get("WEB_WORKERS"), "WEB_WORKERS"
    if requested is None:
        requested, source = config.get("WEB_CONCURRENCY"), "WEB_CONCURRENCY"
    if requested is None:
        source = None
    candidates: list[tuple[int, str, str]] = []
    if requested is not None:
        candidates.append((requested, source or "", f"requested by {source}"))
    candidates.extend((p.limit, plugin, p.reason) for plugin, p in proposals)
    if not candidates:
        candidates.append((DEFAULT_WORKERS, "default", "no request and no sizing plugin"))
    limit, who, why = min(candidates, key=lambda c: c[0])  # min keeps the first of equals
    final = max(1, limit)
    if final != limit:
        why += f" (raised from {limit} to the minimum of 1)"
    return WorkerDecision(final, requested, source, proposals, who, why)
