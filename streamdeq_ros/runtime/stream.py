"""StreamSession: one video stream's fixed-point state, warm-started from frame to frame.

For a stream x_0, x_1, ... the session keeps the multiscale state z on the model's device:

    z_0^0 = 0,   z_t^0 = z_{t-1}^M,   z_t^k = solver step of f(z; u_t),  k = 1..M

so the representation is refined across time instead of rebuilt per frame (StreamDEQ, Eq. 6).
The session knows nothing of ROS. It needs a *backbone* with the methods of
:class:`streamdeq_ros.model.MDEQBackbone` (``inject``, ``zeros``, ``f``, ``state_matches``) and
an optional *readout* (the task heads) that maps a state to outputs.

The iteration count of a frame is decided in one place, :class:`~streamdeq_ros.runtime.budget.
IterationBudget` (see :mod:`streamdeq_ros.runtime.budget`). A session holds no budget: the owner
of the frame loop (the pipeline for the node's cameras) passes its one budget to each
:meth:`StreamSession.step` and :func:`step_batch`.

:func:`step_batch` advances several sessions (cameras) by one frame each in one batched solve;
each session ends exactly where its own :meth:`StreamSession.step` would have.
"""
from dataclasses import dataclass, field
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch.nn.utils import parametrize

from .budget import DeadlinePlanner, IterationBudget
from ..model.solvers import BATCH_SOLVERS, SOLVERS

Readout = Callable[[List[torch.Tensor]], Any]


class NonFiniteStateError(RuntimeError):
    """The solve produced NaN/Inf even when restarted from zeros (the frame is unusable)."""


@dataclass
class PartialResult:
    """Head outputs after ``iteration`` iterations of the current frame."""

    iteration: int
    residual: float
    outputs: Any


@dataclass
class FrameResult:
    """What :meth:`StreamSession.step` returns for one frame."""

    outputs: Any
    frame_index: int
    iters: int
    f_evals: int
    residuals: List[float]
    final_residual: float
    warm: bool
    reset: bool
    latency_ms: float
    partials: List[PartialResult] = field(default_factory=list)
    #: ``time.perf_counter()`` when the solve (and its partial reads) ended
    solve_end: float = 0.0


@dataclass
class SessionStats:
    """Counters a monitor reads (diagnostics)."""

    frames: int = 0
    resets: int = 0
    nonfinite_resets: int = 0
    shape_resets: int = 0
    cut_resets: int = 0             # restarts at a hard cut (the pipeline's cut detector)


class _Clock:
    """The time of one frame's solve: feeds the planner, applies the deadline rule."""

    def __init__(self, budget: IterationBudget, planner: Optional[DeadlinePlanner],
                 started: Optional[float], batch: int):
        self.budget, self.planner, self.batch = budget, planner, batch
        self.t0 = time.perf_counter() if started is None else started
        self.mark = time.perf_counter()

    def begin(self):
        """Mark the start of the first iteration."""
        self.mark = time.perf_counter()

    def iteration_done(self):
        """Take the end of an iteration (before any partial read)."""
        if self.planner is not None:
            self.planner.observe_iteration(self.batch, (time.perf_counter() - self.mark) * 1e3)

    def stop(self) -> bool:
        """Return whether the deadline ends the solve here (the next iteration starts now)."""
        now = self.mark = time.perf_counter()
        deadline = self.budget.deadline_ms
        if deadline <= 0:
            return False
        elapsed = (now - self.t0) * 1e3
        if self.budget.deadline_rule == 'reactive' or self.planner is None:
            return elapsed >= deadline
        return not self.planner.another_fits(self.batch, elapsed, deadline)


class StreamSession:
    """Per-stream state and warm-started solves (one session per camera)."""

    def __init__(self, backbone, readout: Optional[Readout] = None, solver: str = 'unroll',
                 name: str = 'stream', planner: Optional[DeadlinePlanner] = None):
        """Create a session over ``backbone``; ``readout`` maps a state to outputs.

        ``planner``: the iteration and output costs of the ``predictive`` deadline rule
        (shared by the sessions of one model; without one that rule acts as ``reactive``).
        """
        if solver not in SOLVERS:
            raise ValueError('unknown solver %r (known: %s)' % (solver, ', '.join(SOLVERS)))
        self.backbone = backbone
        self.readout = readout
        self.solver = solver
        self.name = name
        self.planner = planner
        self.stats = SessionStats()
        self._z: Optional[List[torch.Tensor]] = None
        self._frame = 0

    @property
    def state(self) -> Optional[List[torch.Tensor]]:
        """Return the per-scale tensors on the model's device, or None after a reset."""
        return self._z

    @property
    def device(self) -> torch.device:
        """The device the model (and so the state) lives on."""
        return next(self.backbone.parameters()).device

    def reset(self):
        """Forget the state: the next frame starts from z = 0."""
        self._z = None
        self.stats.resets += 1

    def read(self, z: List[torch.Tensor]):
        """Return the readout of the state ``z`` (None without a readout)."""
        return self.readout(z) if self.readout is not None else None

    def commit(self, z: List[torch.Tensor], warm: bool) -> int:
        """Keep ``z`` as the state after a frame; return the frame's index in the stream.

        A state that could not be warm-started from (``warm`` False while one was held) counts
        as a shape reset.
        """
        if self._z is not None and not warm:
            self.stats.shape_resets += 1
        self._z = z
        self._frame += 1
        self.stats.frames += 1
        return self._frame - 1

    def finish(self, z: List[torch.Tensor], warm: bool, reset: bool, iters: int, f_evals: int,
               residuals: List[float], partials: List[PartialResult], t0: float,
               solve_end: float) -> FrameResult:
        """Commit the solved state ``z`` and return the frame's result (its readout)."""
        index = self.commit(z, warm)
        outputs = self.read(z)
        return FrameResult(outputs=outputs, frame_index=index, iters=iters,
                           f_evals=f_evals, residuals=residuals,
                           final_residual=residuals[-1] if residuals else float('nan'),
                           warm=warm, reset=reset,
                           latency_ms=(time.perf_counter() - t0) * 1e3, partials=partials,
                           solve_end=solve_end)

    def drop_state(self):
        """Forget an unusable state (the caller counts why; not a :meth:`reset`)."""
        self._z = None

    def _solve(self, u, z0, budget: IterationBudget, partial_at: Sequence[int], clock: _Clock,
               partials: List[PartialResult], on_partial):
        want = {int(k) for k in partial_at}

        def callback(k, z, residual):
            clock.iteration_done()
            if k in want and k < budget.iters and self._finite(z):
                part = PartialResult(k, residual, self.read(z))
                partials.append(part)
                if on_partial is not None:
                    on_partial(part)
            return clock.stop()

        def f(z):
            return self.backbone.f(z, u)

        clock.begin()
        return SOLVERS[self.solver](f, z0, budget.iters, tol=budget.tol, callback=callback)

    @staticmethod
    def _finite(z: Iterable[torch.Tensor]) -> bool:
        flags = torch.stack([torch.isfinite(t).all() for t in z])
        return bool(flags.all())

    def step(self, frame: torch.Tensor, budget: Optional[IterationBudget] = None,
             iters: Optional[int] = None, partial_at: Sequence[int] = (),
             on_partial: Optional[Callable[[PartialResult], None]] = None,
             started: Optional[float] = None) -> FrameResult:
        """Process one frame (N, 3, H, W) on the model's device; return the refined result.

        ``budget``: the frame's iterations, tolerance and deadline (default
        ``IterationBudget()``); ``iters`` overrides its M for this frame only. For each k in
        ``partial_at`` (k < M) the readout of z_t^k is reported as a partial result, to
        ``on_partial`` as soon as it exists and in ``FrameResult.partials``. The refined result
        is always the readout after the last iteration. A partial is never taken from a
        non-finite state; when a diverged warm state forces a restart from zeros, the restarted
        solve reports its partials again (``FrameResult.reset`` is then True). ``started``: the
        ``time.perf_counter()`` at which the frame began, for its deadline (default: now).
        """
        t0 = time.perf_counter()
        budget = (budget or IterationBudget()).with_iters(iters)
        clock = _Clock(budget, self.planner, started, 1)
        partials: List[PartialResult] = []
        with torch.inference_mode(), parametrize.cached():
            u = self.backbone.inject(frame)
            warm = self.backbone.state_matches(self._z, u)
            reset = self._z is not None and not warm
            z0 = self._z if warm else self.backbone.zeros(u)
            result = self._solve(u, z0, budget, partial_at, clock, partials, on_partial)
            if not self._finite(result.z):
                return self.restart(u, warm, budget, partial_at, on_partial, clock, t0)
            return self.finish(list(result.z), warm, reset, result.iters, result.f_evals,
                               result.residuals, partials, t0, time.perf_counter())

    def restart(self, u, warm: bool, budget: IterationBudget, partial_at: Sequence[int],
                on_partial: Optional[Callable[[PartialResult], None]], clock: '_Clock',
                t0: float) -> FrameResult:
        """Solve the frame (injection ``u``) again from zeros after a non-finite state.

        Only a warm start is retried: a zero start that went non-finite, or a retry that does,
        raises :class:`NonFiniteStateError` (the state is dropped either way). The retry's
        partials are reported again; its deadline is still ``clock``'s.
        """
        self._z = None
        if not warm:
            raise NonFiniteStateError(
                'stream %r: non-finite fixed-point state from a zero start' % self.name)
        self.stats.nonfinite_resets += 1
        partials: List[PartialResult] = []
        result = self._solve(u, self.backbone.zeros(u), budget, partial_at, clock, partials,
                             on_partial)
        if not self._finite(result.z):
            raise NonFiniteStateError(
                'stream %r: non-finite state after a reset to zeros' % self.name)
        return self.finish(list(result.z), False, True, result.iters, result.f_evals,
                           result.residuals, partials, t0, time.perf_counter())

    def snapshot(self) -> Dict[str, Any]:
        """Plain-data summary for logs and diagnostics."""
        s = self.stats
        return {'name': self.name, 'frames': s.frames, 'resets': s.resets,
                'nonfinite_resets': s.nonfinite_resets, 'shape_resets': s.shape_resets,
                'cut_resets': s.cut_resets, 'solver': self.solver}


#: ``on_partial(k, parts)`` of :func:`step_batch`: the partial result of each batch index
BatchPartial = Callable[[int, Dict[int, PartialResult]], None]


def step_batch(sessions: Sequence[StreamSession], frames: torch.Tensor,
               budget: Optional[IterationBudget] = None, iters: Optional[int] = None,
               partial_at: Sequence[int] = (),
               on_partial: Optional[BatchPartial] = None, started: Optional[float] = None
               ) -> List[Union[FrameResult, NonFiniteStateError]]:
    """Advance each session by its frame (``frames[i]`` for ``sessions[i]``) in one solve.

    The sessions share one backbone and use the ``unroll`` solver; ``budget`` (default
    ``IterationBudget()``) applies to all (``iters`` overrides its M). Per session, as in
    :meth:`StreamSession.step`: a session without a usable state starts from zeros inside the
    batch; residuals and the tolerance are per session (a converged session keeps its state
    while the others go on); the deadline is the batch's; partial results come per iteration
    for the sessions that ran it, as ``on_partial(k, {index: PartialResult})``. A session whose
    state turns non-finite is restarted from zeros alone (a warm one; its partials are reported
    again); when even that fails, or its zero start was non-finite, its entry is the
    :class:`NonFiniteStateError` instead of a result, and the other sessions are unaffected.
    ``started``: as in
    :meth:`StreamSession.step`; the first session's planner is the batch's.
    """
    if len(sessions) != frames.shape[0]:
        raise ValueError('step_batch: %d sessions for %d frames'
                         % (len(sessions), frames.shape[0]))
    if not sessions:
        return []
    first = sessions[0]
    for s in sessions:
        if s.backbone is not first.backbone:
            raise ValueError('step_batch: stream %r has another backbone' % s.name)
        if s.solver not in BATCH_SOLVERS:
            raise ValueError('step_batch: stream %r uses solver %r; batched solving needs '
                             '%s' % (s.name, s.solver, ' or '.join(BATCH_SOLVERS)))
        if s.solver != first.solver:
            raise ValueError('step_batch: stream %r uses solver %r, stream %r %r: one batch '
                             'runs one solver' % (s.name, s.solver, first.name, first.solver))
    t0 = time.perf_counter()
    budget = (budget or IterationBudget()).with_iters(iters)
    clock = _Clock(budget, first.planner, started, len(sessions))
    want = {int(k) for k in partial_at}
    n = len(sessions)
    partials: List[List[PartialResult]] = [[] for _ in range(n)]
    backbone = first.backbone
    with torch.inference_mode(), parametrize.cached():
        u = backbone.inject(frames)
        one = [None if t is None else t[:1] for t in u]
        zeros = backbone.zeros(one)
        warm = [backbone.state_matches(s.state, one) for s in sessions]
        z0 = [torch.cat([s.state[j] if w else zeros[j] for s, w in zip(sessions, warm)])
              for j in range(len(zeros))]

        def callback(k, z, residuals, running):
            clock.iteration_done()
            if k in want and k < budget.iters:
                parts = {}
                for i in running:
                    zi = [t[i:i + 1] for t in z]
                    if StreamSession._finite(zi):
                        parts[i] = PartialResult(k, residuals[i], sessions[i].read(zi))
                        partials[i].append(parts[i])
                if parts and on_partial is not None:
                    on_partial(k, parts)
            return clock.stop()

        clock.begin()
        result = BATCH_SOLVERS[first.solver](lambda z: backbone.f(z, u), z0, budget.iters,
                                             tol=budget.tol, callback=callback)
        solve_end = time.perf_counter()
        out: List[Union[FrameResult, NonFiniteStateError]] = []
        for i, s in enumerate(sessions):
            # a batch of one is the state itself; a slice of a larger batch is copied so the
            # session does not keep the whole batch alive
            zi = list(result.z) if n == 1 else [t[i:i + 1].clone() for t in result.z]
            if StreamSession._finite(zi):
                out.append(s.finish(zi, warm[i], s.state is not None and not warm[i],
                                    result.iters[i], result.iters[i], result.residuals[i],
                                    partials[i], t0, solve_end))
                continue
            # alone, from zeros; its deadline still counts from when the batch's frames began
            member = None if on_partial is None else (
                lambda p, i=i: on_partial(p.iteration, {i: p}))
            try:
                out.append(s.restart([None if t is None else t[i:i + 1] for t in u], warm[i],
                                     budget, partial_at, member,
                                     _Clock(budget, s.planner, clock.t0, 1), t0))
            except NonFiniteStateError as exc:
                out.append(exc)
    return out
