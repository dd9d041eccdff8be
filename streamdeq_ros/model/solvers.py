"""Fixed-point solvers for z = f(z) over a multiscale state (a list of tensors).

Both solvers take an initial state, a maximum number of iterations, an optional relative
tolerance for early exit and an optional per-iteration callback, and return a
:class:`SolverResult` with the per-iteration relative residuals ||f(z) - z|| / ||f(z)||.

- :func:`unroll`: z_k = f(z_{k-1}). Iteration k costs one f evaluation; its residual is that of
  the point it evaluated, z_{k-1} (equal to the step size ||z_k - z_{k-1}|| / ||z_k||).
- :func:`broyden`: Broyden's ("good") method on g(z) = f(z) - z with a limited-memory low-rank
  inverse-Jacobian estimate J^-1 ~ -I + U V^T over the flattened state. It evaluates g at z_0,
  then once per iteration, and returns the lowest-residual point it evaluated. So ``max_iter``
  iterations cost ``max_iter + 1`` evaluations of f (as in the official MDEQ solver); its first
  step equals one unrolling step.

Norms are taken over the whole batch. The callback is ``callback(k, z_k, residual)``; returning
True stops the solve after iteration k (used for deadlines).

:func:`unroll_batch` unrolls a batch of *independent* streams (one sample each): residuals and
the tolerance are per sample, so every sample ends where its own :func:`unroll` would have.
"""
from dataclasses import dataclass, field
import math
from typing import Callable, List, Optional, Sequence

import torch

State = List[torch.Tensor]
Callback = Callable[[int, State, float], Optional[bool]]

_EPS = 1e-9


@dataclass
class SolverResult:
    """What a solve returns."""

    z: State
    residuals: List[float] = field(default_factory=list)
    iters: int = 0
    f_evals: int = 0
    converged: bool = False
    #: residual of the returned point (unroll: of its last step); NaN when nothing ran
    final_residual: float = float('nan')


def flatten(z: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, N) view of a multiscale state."""
    b = z[0].shape[0]
    return torch.cat([t.reshape(b, -1) for t in z], dim=1)


def unflatten(x: torch.Tensor, shapes: Sequence[torch.Size]) -> State:
    """Inverse of :func:`flatten` for the given per-scale shapes (views, no copy)."""
    out, start = [], 0
    for s in shapes:
        n = 1
        for d in s[1:]:
            n *= d
        out.append(x[:, start:start + n].reshape(s))
        start += n
    return out


def _rel(g: torch.Tensor, fz: torch.Tensor) -> torch.Tensor:
    return g.norm() / (fz.norm() + _EPS)


def _check(max_iter: int, tol: Optional[float]):
    if int(max_iter) != max_iter or max_iter < 0:
        raise ValueError('max_iter must be a non-negative integer, got %r' % (max_iter,))
    if tol is not None and not tol > 0:
        raise ValueError('tol must be positive or None, got %r' % (tol,))


def unroll(f: Callable[[State], State], z0: Sequence[torch.Tensor], max_iter: int,
           tol: Optional[float] = None, callback: Optional[Callback] = None) -> SolverResult:
    """Fixed-point iteration z <- f(z) for at most ``max_iter`` iterations."""
    _check(max_iter, tol)
    z = list(z0)
    eager = tol is not None or callback is not None
    res_t, res = [], []
    k = 0
    converged = False
    for k in range(1, max_iter + 1):
        fz = f(z)
        r = _rel(flatten(fz) - flatten(z), flatten(fz))
        z = fz
        if eager:
            r = float(r)
            res.append(r)
            stop = callback(k, z, r) if callback is not None else False
            if tol is not None and r < tol:
                converged = True
                break
            if stop:
                break
        else:
            res_t.append(r.detach())
    if res_t:
        res = torch.stack(res_t).tolist()
    return SolverResult(z=z, residuals=res, iters=k, f_evals=k, converged=converged,
                        final_residual=res[-1] if res else float('nan'))


def broyden(f: Callable[[State], State], z0: Sequence[torch.Tensor], max_iter: int,
            tol: Optional[float] = None, callback: Optional[Callback] = None,
            memory: Optional[int] = None) -> SolverResult:
    """Limited-memory Broyden's method on g(z) = f(z) - z; returns the lowest-residual point."""
    _check(max_iter, tol)
    shapes = [t.shape for t in z0]
    x = flatten(z0)
    fx = flatten(f(unflatten(x, shapes)))
    gx = fx - x
    r = float(_rel(gx, fx))
    residuals = [r]
    best_r, best_x = r, x
    if max_iter == 0 or (tol is not None and r < tol):
        return SolverResult(z=unflatten(x, shapes), residuals=residuals, iters=0, f_evals=1,
                            converged=tol is not None and r < tol, final_residual=r)
    m = max(1, min(memory or max_iter, max_iter))
    b, n = x.shape
    us = x.new_zeros(b, n, m)      # columns u_i
    vts = x.new_zeros(b, m, n)     # rows v_i^T
    update = gx                    # -J^-1 g with J^-1 = -I
    k = 0
    converged = False
    for k in range(1, max_iter + 1):
        x_new = x + update
        f_new = flatten(f(unflatten(x_new, shapes)))
        g_new = f_new - x_new
        dx, dg = x_new - x, g_new - gx
        jinv_dg = -dg + torch.bmm(us, torch.bmm(vts, dg.unsqueeze(2))).squeeze(2)
        vt = -dx + torch.bmm(torch.bmm(dx.unsqueeze(1), us), vts).squeeze(1)
        denom = (vt * dg).sum(dim=1, keepdim=True)
        ok = denom.abs() > _EPS
        u = torch.where(ok, (dx - jinv_dg) / torch.where(ok, denom, torch.ones_like(denom)),
                        torch.zeros_like(dx))
        slot = (k - 1) % m
        us[:, :, slot] = u
        vts[:, slot, :] = torch.where(ok, vt, torch.zeros_like(vt))
        update = g_new - torch.bmm(us, torch.bmm(vts, g_new.unsqueeze(2))).squeeze(2)
        x, gx = x_new, g_new
        r = float(_rel(g_new, f_new))
        residuals.append(r)
        if r < best_r or not math.isfinite(best_r):
            best_r, best_x = r, x
        stop = callback(k, unflatten(x, shapes), r) if callback is not None else False
        if tol is not None and r < tol:
            converged = True
            break
        if stop:
            break
    return SolverResult(z=unflatten(best_x, shapes), residuals=residuals, iters=k,
                        f_evals=k + 1, converged=converged, final_residual=best_r)


@dataclass
class BatchSolverResult:
    """What :func:`unroll_batch` returns: the state and, per sample, what it ran."""

    z: State
    residuals: List[List[float]]
    iters: List[int]
    converged: List[bool]


BatchCallback = Callable[[int, State, List[float], List[int]], Optional[bool]]


def unroll_batch(f: Callable[[State], State], z0: Sequence[torch.Tensor], max_iter: int,
                 tol: Optional[float] = None,
                 callback: Optional[BatchCallback] = None) -> BatchSolverResult:
    """Unroll z <- f(z) for a batch of independent samples, with per-sample residuals.

    A sample whose relative residual falls below ``tol`` keeps that iteration's state while the
    others go on: its rows are still computed (the batch has one shape) but discarded, so each
    sample's state, residuals and iteration count equal those of :func:`unroll` on it alone.
    ``callback(k, z_k, residuals_k, running)`` sees the samples that ran iteration k
    (``running``) and every sample's residual; returning True stops all after iteration k.
    """
    _check(max_iter, tol)
    z = list(z0)
    b = z[0].shape[0]
    eager = tol is not None or callback is not None
    running = list(range(b))
    res_t: List[torch.Tensor] = []
    residuals: List[List[float]] = [[] for _ in range(b)]
    iters, converged = [0] * b, [False] * b
    for k in range(1, max_iter + 1):
        fz = f(z)
        flat = flatten(fz)
        r_t = (flat - flatten(z)).norm(dim=1) / (flat.norm(dim=1) + _EPS)
        if len(running) == b:
            z = fz
        else:
            keep = torch.zeros(b, dtype=torch.bool)
            keep[running] = True
            keep = keep.to(fz[0].device)
            z = [torch.where(keep.view(-1, *[1] * (t.dim() - 1)), t, old)
                 for t, old in zip(fz, z)]
        for i in running:
            iters[i] = k
        if not eager:
            res_t.append(r_t)
            continue
        r = r_t.tolist()
        for i in running:
            residuals[i].append(r[i])
        stop = callback(k, z, r, list(running)) if callback is not None else False
        if tol is not None:
            for i in running:
                converged[i] = r[i] < tol
            running = [i for i in running if not converged[i]]
        if stop or not running:
            break
    if res_t:
        residuals = torch.stack(res_t, dim=1).tolist()
    return BatchSolverResult(z=z, residuals=residuals, iters=iters, converged=converged)


#: the one registry of solvers: name -> solve(f, z0, max_iter, tol, callback). Every choice
#: of a solver (model cards, the node's ``solver`` parameter, ``streamdeq eval --model``,
#: the benches) is checked against it.
SOLVERS = {'unroll': unroll, 'broyden': broyden}
#: the solvers that can solve several streams in one batch: name -> batched solve
BATCH_SOLVERS = {'unroll': unroll_batch}
#: a model card that names no solver
DEFAULT_SOLVER = 'unroll'


def solve(name: str, f, z0, max_iter: int, tol: Optional[float] = None,
          callback: Optional[Callback] = None) -> SolverResult:
    """Dispatch to ``unroll`` or ``broyden`` by name."""
    try:
        fn = SOLVERS[name]
    except KeyError:
        raise ValueError('unknown solver %r (known: %s)' % (name, ', '.join(SOLVERS))) from None
    return fn(f, z0, max_iter, tol=tol, callback=callback)
