"""How many iterations a frame gets: the iteration budget and the deadline planner.

:class:`IterationBudget` is the one place that decides: a fixed M, an optional relative-
residual tolerance for early exit, and an optional deadline, applied reactively (stop once it
has passed) or predictively (stop before an iteration that, with the frame's outputs, would not
fit; the costs come from a shared :class:`DeadlinePlanner`, measured online by
:class:`CostEstimate`).
"""
from dataclasses import dataclass
import math
from typing import Dict, Optional, Tuple

#: how a frame's deadline ends its iterations (see :class:`IterationBudget`)
DEADLINE_RULES = ('predictive', 'reactive')


@dataclass
class IterationBudget:
    """How many solver iterations a frame gets.

    ``iters``: the maximum M (>= 1). ``tol``: stop early once the relative residual falls
    below it (None: never). ``deadline_ms``: a time budget for the frame, counted from when the
    frame began (0: off), applied by ``deadline_rule``:

    - ``reactive``: stop after the iteration during which the budget ran out (the frame then
      overshoots by up to one iteration plus its outputs);
    - ``predictive``: before each further iteration, stop when the time spent plus the
      :class:`DeadlinePlanner`'s estimate of one more iteration and of the frame's outputs
      would pass the budget.

    At least one iteration always runs.
    """

    iters: int = 2
    tol: Optional[float] = None
    deadline_ms: float = 0.0
    deadline_rule: str = 'predictive'

    def __post_init__(self):
        """Validate the numbers; raise ValueError with the reason."""
        if isinstance(self.iters, bool) or int(self.iters) != self.iters or self.iters < 1:
            raise ValueError('iters must be an integer >= 1, got %r' % (self.iters,))
        self.iters = int(self.iters)
        if self.tol is not None and not (self.tol > 0 and math.isfinite(self.tol)):
            raise ValueError('tol must be a positive number or None, got %r' % (self.tol,))
        if not (self.deadline_ms >= 0 and math.isfinite(self.deadline_ms)):
            raise ValueError('deadline_ms must be >= 0, got %r' % (self.deadline_ms,))
        if self.deadline_rule not in DEADLINE_RULES:
            raise ValueError('deadline_rule must be one of %s, got %r'
                             % (', '.join(DEADLINE_RULES), self.deadline_rule))

    def with_iters(self, iters: Optional[int]) -> 'IterationBudget':
        """Return this budget with M = ``iters`` (itself when None)."""
        if iters is None:
            return self
        return IterationBudget(iters, self.tol, self.deadline_ms, self.deadline_rule)


class CostEstimate:
    """A running estimate of a duration that is rarely exceeded: mean + k x mean deviation.

    The same smoothing as TCP's retransmission timer (RFC 6298): the mean follows each sample
    with gain ``gain``, the mean absolute deviation with twice that gain, so a change of load
    shows within a few samples and the margin widens while the samples scatter.
    """

    def __init__(self, gain: float = 0.125, k: float = 2.0):
        """Start without samples (the estimate is 0 until the first one)."""
        self.gain, self.k = gain, k
        self.mean: Optional[float] = None
        self.dev = 0.0

    def add(self, ms: float):
        """Take one measured duration in milliseconds."""
        if not math.isfinite(ms) or ms < 0:
            return
        if self.mean is None:
            self.mean, self.dev = ms, ms / 2
            return
        self.dev += 2 * self.gain * (abs(ms - self.mean) - self.dev)
        self.mean += self.gain * (ms - self.mean)

    @property
    def ms(self) -> float:
        """Return the estimate (0 before any sample)."""
        return 0.0 if self.mean is None else self.mean + self.k * self.dev


class DeadlinePlanner:
    """Online costs for the ``predictive`` deadline rule, shared by the streams of one model.

    One iteration's cost is estimated per batch size (it grows with the batch) and per solver
    thread count (:meth:`use_threads`: a count chosen under load has costs of its own); the
    cost of a frame's outputs after its solve (heads, masks, messages, publishing) is reported
    by whoever finishes the frame with :meth:`observe_outputs`.
    """

    def __init__(self):
        """Start with no costs known (the first frame runs its full M)."""
        self.threads = 0
        self.iteration: Dict[Tuple[int, int], CostEstimate] = {}
        self.outputs_by: Dict[int, CostEstimate] = {}

    def use_threads(self, threads: int):
        """Estimate and predict with the costs measured at ``threads`` solver threads."""
        self.threads = int(threads)

    @property
    def outputs(self) -> CostEstimate:
        """Return the outputs' cost estimate at the current thread count."""
        return self.outputs_by.setdefault(self.threads, CostEstimate())

    def observe_iteration(self, batch: int, ms: float):
        """Take the time of one iteration of a batch of ``batch`` streams."""
        self.iteration.setdefault((self.threads, int(batch)), CostEstimate()).add(ms)

    def observe_outputs(self, ms: float):
        """Take the time from the end of a frame's solve to its last output."""
        self.outputs.add(ms)

    def another_fits(self, batch: int, elapsed_ms: float, deadline_ms: float) -> bool:
        """Return whether one more iteration and the outputs fit in the time left."""
        est = self.iteration.get((self.threads, int(batch)))
        one = est.ms if est is not None else 0.0
        return elapsed_ms + one + self.outputs.ms <= deadline_ms
