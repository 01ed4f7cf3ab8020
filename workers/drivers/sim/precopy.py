"""A pre-copy migration model: memory, dirty rate, bandwidth and max downtime decide everything.

QEMU copies all RAM while the guest runs, then re-sends what was dirtied meanwhile, pass after pass,
until what is left can be sent within the downtime limit; then it pauses the guest and sends the
rest. If the guest dirties memory as fast as the link carries it, it never converges.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Pass:
    start: float
    duration: float
    bytes: int


@dataclass(frozen=True)
class PrecopyPlan:
    converges: bool
    passes: tuple[Pass, ...]
    downtime: float
    transferred: int

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.passes) + self.downtime

    @property
    def iterations(self) -> int:
        return len(self.passes)


def plan_precopy(
    memory_bytes: int,
    dirty_bytes_per_s: float,
    bandwidth_bytes_per_s: float,
    max_downtime_s: float = 0.3,
    max_passes: int = 30,
) -> PrecopyPlan:
    """Simulate pre-copy passes; ``converges`` is False when the passes do not shrink enough."""
    if memory_bytes <= 0 or bandwidth_bytes_per_s <= 0:
        raise ValueError("memory and bandwidth must be positive")
    passes: list[Pass] = []
    clock, remaining, transferred = 0.0, float(memory_bytes), 0
    for _ in range(max_passes):
        duration = remaining / bandwidth_bytes_per_s
        passes.append(Pass(clock, duration, int(remaining)))
        clock += duration
        transferred += int(remaining)
        dirtied = min(float(memory_bytes), dirty_bytes_per_s * duration)
        if dirtied / bandwidth_bytes_per_s <= max_downtime_s:
            return PrecopyPlan(
                True, tuple(passes), dirtied / bandwidth_bytes_per_s, transferred + int(dirtied)
            )
        if dirtied >= remaining:
            break
        remaining = dirtied
    return PrecopyPlan(False, tuple(passes), 0.0, transferred)


def progress_at(
    plan: PrecopyPlan, elapsed: float, memory_bytes: int, dirty_rate: float
) -> dict[str, float]:
    """Job statistics (libvirt's names) ``elapsed`` seconds into the plan."""
    sent, iteration = 0.0, 0
    remaining = float(memory_bytes)
    for index, step in enumerate(plan.passes):
        if elapsed <= step.start:
            break
        iteration = index
        fraction = min(1.0, (elapsed - step.start) / step.duration) if step.duration else 1.0
        sent += step.bytes * fraction
        remaining = step.bytes * (1 - fraction)
    return {
        "memory_total": float(memory_bytes),
        "memory_processed": sent,
        "memory_remaining": remaining,
        "memory_iteration": float(iteration),
        "memory_dirty_rate": dirty_rate,
        "time_elapsed_ms": elapsed * 1000,
        "percent": min(100.0, 100.0 * sent / max(1.0, float(plan.transferred))),
    }
