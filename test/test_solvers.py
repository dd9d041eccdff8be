"""Solver tests on a DEQ that is a contraction by construction."""
import pytest
import torch

from contractive_deq import ContractiveDEQ
from streamdeq_ros.data import panning_frames as shifting_frames
from streamdeq_ros.model.solvers import broyden, solve, unroll

TOL = 1e-4


def _problem(rho=0.95):
    model = ContractiveDEQ(rho=rho)
    u = model.inject(shifting_frames(n=1)[0])
    return model, u, (lambda z: model.f(z, u))


@torch.no_grad()
def test_unroll_residual_falls_on_contraction():
    model, u, f = _problem()
    res = unroll(f, model.zeros(u), 60)
    assert len(res.residuals) == 60 and res.iters == 60 and res.f_evals == 60
    assert res.residuals[0] == pytest.approx(1.0)      # from zeros: ||f(0) - 0|| / ||f(0)||
    assert res.residuals[-1] < 0.05 * res.residuals[1]
    # a contraction shrinks the absolute step ||z_k - z_{k-1}|| every iteration
    z = model.zeros(u)
    steps = []
    for _ in range(20):
        fz = f(z)
        steps.append(sum(float((a - b).norm() ** 2) for a, b in zip(fz, z)) ** 0.5)
        z = fz
    assert all(b <= a * 0.951 for a, b in zip(steps[1:], steps[2:]))


@torch.no_grad()
def test_broyden_beats_unrolling_to_tolerance():
    model, u, f = _problem()
    a = unroll(f, model.zeros(u), 500, tol=TOL)
    b = broyden(f, model.zeros(u), 500, tol=TOL)
    assert a.converged and b.converged
    assert a.final_residual < TOL and b.final_residual < TOL
    assert b.f_evals < 0.6 * a.f_evals, (b.f_evals, a.f_evals)
    # both find the same fixed point
    for za, zb in zip(a.z, b.z):
        assert torch.allclose(za, zb, atol=5e-3)


@torch.no_grad()
def test_broyden_returns_lowest_residual_point_and_counts_evals():
    model, u, f = _problem()
    b = broyden(f, model.zeros(u), 5)
    assert b.iters == 5 and b.f_evals == 6 and len(b.residuals) == 6
    assert b.final_residual == min(b.residuals)
    check = f(b.z)
    num = sum(float((x - y).norm() ** 2) for x, y in zip(check, b.z)) ** 0.5
    den = sum(float(x.norm() ** 2) for x in check) ** 0.5
    assert num / den == pytest.approx(b.final_residual, rel=1e-3)


@torch.no_grad()
def test_callback_sees_every_iteration_and_can_stop():
    model, u, f = _problem()
    seen = []
    res = unroll(f, model.zeros(u), 10, callback=lambda k, z, r: seen.append((k, r)) or k == 4)
    assert [k for k, _ in seen] == [1, 2, 3, 4] and res.iters == 4
    seen.clear()
    res = broyden(f, model.zeros(u), 10, callback=lambda k, z, r: seen.append(k) or k == 3)
    assert seen == [1, 2, 3] and res.iters == 3


def test_bad_arguments_are_refused():
    model, u, f = _problem()
    with pytest.raises(ValueError, match='max_iter'):
        unroll(f, model.zeros(u), -1)
    with pytest.raises(ValueError, match='tol'):
        broyden(f, model.zeros(u), 3, tol=0)
    with pytest.raises(ValueError, match='unknown solver'):
        solve('anderson', f, model.zeros(u), 3)
