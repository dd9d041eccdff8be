"""step_batch: several streams in one solve end exactly where each would have alone."""
import pytest
import torch

from contractive_deq import ContractiveDEQ
from streamdeq_ros.data import panning_frames
from streamdeq_ros.model.solvers import unroll, unroll_batch
from streamdeq_ros.runtime.budget import IterationBudget
from streamdeq_ros.runtime.stream import NonFiniteStateError, step_batch, StreamSession


def _streams(n, seed):
    return [panning_frames(n=n, speed=0.1 + 0.05 * k, seed=seed + k) for k in range(3)]


def _same(a, b, tol=1e-5):
    return all(torch.allclose(x, y, atol=tol, rtol=tol) for x, y in zip(a, b))


def _copy(z):
    return [t.clone() for t in z]


@torch.no_grad()
def test_unroll_batch_stops_each_sample_at_its_own_tolerance():
    model = ContractiveDEQ(rho=0.9)
    xs = torch.cat([s[0] for s in _streams(1, 3)])
    xs[1] *= 0.01                                    # converges much sooner than the others
    u = model.inject(xs)
    z0 = model.zeros(u)
    batch = unroll_batch(lambda z: model.f(z, u), z0, 200, tol=1e-3)
    for i in range(3):
        ui = [t[i:i + 1] for t in u]
        alone = unroll(lambda z: model.f(z, ui), [t[i:i + 1] for t in z0], 200, tol=1e-3)
        assert batch.iters[i] == alone.iters and batch.converged[i]
        assert batch.residuals[i] == pytest.approx(alone.residuals, rel=1e-4, abs=1e-7)
        assert _same([t[i:i + 1] for t in batch.z], alone.z)
    assert len(set(batch.iters)) > 1                 # they did stop at different iterations


def test_batched_sessions_match_separate_ones_with_a_late_joiner_a_reset_and_partials():
    model = ContractiveDEQ(rho=0.9)
    streams = _streams(8, 0)
    budget = IterationBudget(iters=4, tol=2e-2)
    alone = [StreamSession(model, _copy, name='a%d' % k) for k in range(3)]
    batched = [StreamSession(model, _copy, name='b%d' % k) for k in range(3)]
    for t in range(8):
        members = [0, 1] if t < 3 else [0, 1, 2]     # the third stream joins at frame 3
        if t == 5:                                   # a reset of stream 1 between frames
            alone[1].reset()
            batched[1].reset()
        parts = {}
        got = step_batch([batched[k] for k in members],
                         torch.cat([streams[k][t] for k in members]), budget, partial_at=[1, 2],
                         on_partial=lambda k, p: parts.setdefault(k, {}).update(p))
        for j, k in enumerate(members):
            ref = alone[k].step(streams[k][t], budget, partial_at=[1, 2])
            res = got[j]
            assert (res.iters, res.warm, res.reset) == (ref.iters, ref.warm, ref.reset)
            assert res.final_residual == pytest.approx(ref.final_residual, rel=1e-4)
            assert _same(batched[k].state, alone[k].state)
            assert [p.iteration for p in res.partials] == [p.iteration for p in ref.partials]
            for p, q in zip(res.partials, ref.partials):
                assert _same(p.outputs, q.outputs)
                assert parts[p.iteration][j] is p     # reported as it happened, by index
        assert not got[0].warm if t == 0 else got[0].warm
    assert not got[2].reset and batched[2].stats.frames == 5
    assert batched[1].stats.resets == 1


def test_a_non_finite_member_is_handled_alone_and_the_others_go_on():
    model = ContractiveDEQ()
    streams = _streams(2, 7)
    budget = IterationBudget(iters=3)
    sessions = [StreamSession(model) for _ in range(3)]
    step_batch(sessions, torch.cat([s[0] for s in streams]), budget)
    with torch.inference_mode():
        sessions[1].state[0][0, 0, 0, 0] = float('nan')     # a diverged warm state
    frames = torch.cat([s[1] for s in streams])
    nan_frame = frames.clone()
    nan_frame[2] = float('nan')                             # a frame no start can solve
    got = step_batch(sessions, nan_frame, budget)
    assert got[0].warm and not got[0].reset
    assert (got[0].iters, got[1].iters) == (3, 3)         # the one budget, every member
    assert got[1].reset and not got[1].warm and sessions[1].stats.nonfinite_resets == 1
    assert isinstance(got[2], NonFiniteStateError) and sessions[2].state is None
    ref = StreamSession(model)
    ref.step(streams[0][0], budget)
    ref.step(streams[0][1], budget)
    assert _same(sessions[0].state, ref.state)


def test_shape_change_and_refusals():
    model = ContractiveDEQ()
    small = panning_frames(n=1, height=32, width=32)[0]
    big = panning_frames(n=1)[0]
    a, b = StreamSession(model), StreamSession(model)
    a.step(small)                                    # a state of another shape
    got = step_batch([a, b], torch.cat([big, big]))
    assert got[0].reset and not got[0].warm and a.stats.shape_resets == 1
    assert not got[1].reset and not got[1].warm
    with pytest.raises(ValueError, match='needs unroll'):
        step_batch([StreamSession(model, solver='broyden')], big)
    with pytest.raises(ValueError, match='2 sessions for 1 frames'):
        step_batch([a, b], big)
    with pytest.raises(ValueError, match='another backbone'):
        step_batch([a, StreamSession(ContractiveDEQ(seed=1))], torch.cat([big, big]))
