"""How many threads the solver uses: measured, not assumed (the node's ``threads: 0``).

On a computer busy with other work (SLAM, planning, drivers), an OpenMP team of N threads
only runs as fast as its slowest member: every parallel region of every convolution ends at a
barrier, and a team thread that the kernel has descheduled for another process holds the whole
team there for a time slice (with libgomp's default wait policy the waiting threads spin).
On 2 cores with 2 busy processes beside it, the default model's frame took 130 ms with 2
threads and 73 ms with 1 (``scripts/solver_threads_under_load.py``, docs/benchmarks.md
"A busy computer"); on an idle machine 2 threads were the faster (33 against 42 ms). No fixed count
is right for both, and trying the wrong one is dear: under that load a single frame at 2
threads took 0.1 to 1 s. So :class:`ThreadPolicy` measures two things:

- the cores there are for the node: :class:`CpuMeter` reads, over the last 2 s, how much of
  the cores this process may use stood idle (``/proc/stat``) plus how much this process itself
  used (``/proc/self/stat``). The count is capped at that plus ``ROUND_UP``, rounded down,
  and at least 1, so a count the other processes leave no room for is never tried;
- a frame's cost sample is the worker's time for it with one iteration: prepare + heads + the
  solve time per iteration, per camera of the batch (the node passes it);
- each count keeps a running estimate of its cost: the exponentially weighted mean of the
  log of its samples (a geometric mean, so one slow outlier moves it little), with gain
  ``gain`` for the count in use and ``explore_gain`` for the others;
- one frame in ``every`` is solved at a neighbouring count on the ladder 1, 2, 4, ..., cores
  under the cap (the one below and the one above, in turn), so every estimate stays current;
  one in 3 x ``every`` when that neighbour is estimated more than 25 % dearer;
- the count in use moves down to a neighbour estimated at least ``margin`` cheaper, up to one
  estimated no more than ``margin`` dearer (near-equal costs settle on the count that uses the
  room the cap allows), and at once below the cap when the cap falls.

So the count follows a load that arrives or leaves within a few dozen frames, and at most one
frame in ``every`` pays for the looking. A count the user sets (``threads: N``) is used as it
is. No ROS here; the node reports :meth:`ThreadPolicy.summary` in /diagnostics.
"""
import collections
import math
import os
from typing import Deque, Dict, List, Optional, Tuple


#: the cap is int(available + ROUND_UP): on 2 cores, 1.3 cores left allow 2 threads; one busy
#: process beside the node leaves about 1.0, two about 0.6 (measured here)
ROUND_UP = 0.7
#: a neighbour estimated dearer than this (log ratio: 25 %) is looked at 3x less often
FAR = math.log(1.25)
#: the OpenMP wait policy under which a team costs what it measures (no spinning): the
#: policy then runs uncapped
WAIT_POLICY = 'PASSIVE'


def ladder(cores: int) -> List[int]:
    """Return the thread counts the policy tries: 1, 2, 4, ... and ``cores`` itself."""
    out, n = [], 1
    while n < cores:
        out.append(n)
        n *= 2
    return out + [max(1, cores)]


class CpuMeter:
    """The cores left for this process: idle time of its CPUs plus its own CPU time, per second.

    Linux only (``/proc``); elsewhere :meth:`available` is None and nothing is capped.
    """

    def __init__(self, window_s: float = 2.0, proc: str = '/proc'):
        """Average over ``window_s`` seconds of samples."""
        self.window_s, self.proc = window_s, proc
        self.hz = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100
        try:
            self.cpus = {'cpu%d' % c for c in os.sched_getaffinity(0)}
        except AttributeError:
            self.cpus = set()
        self.samples: Deque[Tuple[float, float, float]] = collections.deque()

    def _read(self) -> Optional[Tuple[float, float]]:
        try:
            with open(os.path.join(self.proc, 'stat')) as fh:
                idle = sum(int(f[4]) + int(f[5]) for f in (line.split() for line in fh)
                           if f and f[0] in self.cpus)
            with open(os.path.join(self.proc, 'self', 'stat')) as fh:
                fields = fh.read().rsplit(')', 1)[1].split()
            return float(idle), float(int(fields[11]) + int(fields[12]))
        except (OSError, ValueError, IndexError):
            return None

    def available(self, now: float) -> Optional[float]:
        """Sample now; return the cores left for this process over the window (None: unknown)."""
        got = self._read()
        if got is None:
            return None
        self.samples.append((now,) + got)
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()
        t0, idle0, own0 = self.samples[0]
        if now - t0 < 0.25:
            return None
        return (got[0] - idle0 + got[1] - own0) / self.hz / (now - t0)


class ThreadPolicy:
    """The solver's thread count: fixed by the user, or chosen from measured costs."""

    def __init__(self, cores: int, fixed: int = 0, every: int = 10, gain: float = 0.1,
                 explore_gain: float = 0.3, margin: float = 0.05, capped: bool = True):
        """``cores``: the cores this process may use; ``fixed``: the user's count (0: adapt).

        ``capped``: limit the count by the cores :class:`CpuMeter` finds left (for spinning
        OpenMP teams; with a passive wait policy a larger team costs no more than it measures,
        so the measured costs alone decide).
        """
        self.candidates = ladder(cores)
        self.capped = bool(capped)
        self.every, self.gain, self.explore_gain = every, gain, explore_gain
        self.margin = math.log(1 - margin)
        self.log_cost: Dict[int, float] = {}
        self.current = self.candidates[-1]          # an idle machine's best guess
        self.frames = 0
        self.turn = 0
        self.switches = 0
        self.cap = self.candidates[-1]
        self.available: Optional[float] = None
        self.fixed = int(fixed)

    def set_fixed(self, threads: int):
        """Use exactly ``threads`` (0: choose adaptively, from what was measured so far)."""
        self.fixed = int(threads)

    @property
    def adaptive(self) -> bool:
        """Return whether the count is chosen by measurement."""
        return self.fixed == 0

    def _neighbours(self) -> List[int]:
        i = self.candidates.index(self.current)
        return [self.candidates[j] for j in (i - 1, i + 1)
                if 0 <= j < len(self.candidates) and self.candidates[j] <= self.cap]

    @property
    def threads(self) -> int:
        """Return the thread count for the next frame."""
        if self.fixed:
            return self.fixed
        others = self._neighbours()
        if not others:
            return self.current
        other = others[self.turn % len(others)]
        every = self.every
        mine, theirs = self.log_cost.get(self.current), self.log_cost.get(other)
        if mine is not None and theirs is not None and theirs - mine > FAR:
            every *= 3                      # clearly dearer: look less often
        return other if self.frames % every == every - 1 else self.current

    def observe(self, threads: int, ms: float,
                available: Optional[float] = None):
        """Take the cost of one frame solved with ``threads`` (ms, see the module's doc).

        ``available``: the cores left for this process (:class:`CpuMeter`), None if unknown.
        """
        if available is not None:
            self.available = available
        if available is not None and self.capped:
            self.cap = max(1, int(available + ROUND_UP))
            if self.current > self.cap:
                self.current = max(n for n in self.candidates if n <= self.cap)
                self.switches += 1
        if not self.adaptive or threads not in self.candidates or not ms > 0:
            return
        self.frames += 1
        x = math.log(ms)
        if threads not in self.log_cost:
            self.log_cost[threads] = x
        else:
            g = self.gain if threads == self.current else self.explore_gain
            self.log_cost[threads] += g * (x - self.log_cost[threads])
        if threads == self.current:
            return
        self.turn += 1
        mine = self.log_cost.get(self.current)
        # with room for it, more threads need only be no dearer than the margin; fewer must be
        # cheaper by it (so near-equal costs settle on the count that uses the room)
        bar = -self.margin if threads > self.current else self.margin
        if mine is None or self.log_cost[threads] < mine + bar:
            self.current = threads
            self.switches += 1

    def summary(self) -> Dict[str, object]:
        """Return the mode, the count in use and the estimated cost at each count measured."""
        return {'mode': 'adaptive' if self.adaptive else 'fixed', 'threads': self.threads,
                'switches': self.switches, 'cap': self.cap,
                'cores_available': None if self.available is None else round(self.available, 2),
                'ms_per_frame': {n: round(math.exp(v), 3)
                                 for n, v in sorted(self.log_cost.items())}}
