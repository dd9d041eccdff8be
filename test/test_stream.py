"""StreamSession tests: warm start, device residency, reset, non-finite guard, partials."""
import math
import time

import pytest
import torch

from contractive_deq import ContractiveDEQ
from streamdeq_ros.data import panning_frames as shifting_frames
from streamdeq_ros.model import get_config, MDEQBackbone, unroll
from streamdeq_ros.model.heads import SegmentationHead
from streamdeq_ros.runtime.budget import CostEstimate, DeadlinePlanner, IterationBudget
from streamdeq_ros.runtime.stream import NonFiniteStateError, step_batch, StreamSession

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def test_warm_start_needs_at_least_3x_fewer_iterations_than_cold():
    """On a slowly panning image, starting from the last frame's fixed point beats zeros."""
    model = ContractiveDEQ(rho=0.95)
    frames = shifting_frames(n=8, speed=0.1)
    budget = IterationBudget(iters=2000, tol=1e-4)
    warm = StreamSession(model, name='warm')
    cold = StreamSession(model, name='cold')
    warm_iters, cold_iters = [], []
    for t, x in enumerate(frames):
        w = warm.step(x, budget)
        cold.reset()
        c = cold.step(x, budget)
        assert w.final_residual < 1e-4 and c.final_residual < 1e-4
        assert w.warm == (t > 0) and not c.warm
        if t > 0:
            warm_iters.append(w.iters)
            cold_iters.append(c.iters)
    ratio = sum(cold_iters) / sum(warm_iters)
    assert ratio >= 3.0, (cold_iters, warm_iters)


@pytest.mark.parametrize('device', DEVICES)
def test_state_stays_on_the_model_device_between_frames(device, monkeypatch):
    cfg = get_config('tiny')
    model = MDEQBackbone(cfg).eval().to(device)
    session = StreamSession(model)
    two = IterationBudget(iters=2)
    frames = [x.to(device) for x in shifting_frames(n=3, height=64, width=64)]
    session.step(frames[0], two)
    calls = []
    for name in ('cpu', 'numpy', 'tolist'):
        original = getattr(torch.Tensor, name)

        def spy(self, *a, _name=name, _orig=original, **k):
            if self.numel() > 1:
                calls.append(_name)
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, spy)
    before = session.state
    r = session.step(frames[1], two)
    monkeypatch.undo()
    assert calls == [], 'state left the device: %s' % calls
    assert r.warm and session.state is not before
    assert all(t.device.type == torch.device(device).type for t in session.state)
    assert [t.shape[1] for t in session.state] == list(cfg.num_channels)


def test_reset_and_shape_change_start_from_zeros():
    model = ContractiveDEQ()
    session = StreamSession(model)
    x = shifting_frames(n=1)[0]
    assert not session.step(x).warm
    assert session.step(x).warm
    session.reset()
    r = session.step(x)
    assert not r.warm and session.stats.resets == 1
    small = shifting_frames(n=1, height=32, width=32)[0]
    r = session.step(small)
    assert not r.warm and r.reset and session.stats.shape_resets == 1
    snap = session.snapshot()
    assert (snap['frames'], snap['resets'], snap['shape_resets']) == (4, 1, 1)


def test_non_finite_state_resets_itself_and_is_counted():
    model = ContractiveDEQ()
    session = StreamSession(model)
    frames = shifting_frames(n=3)
    session.step(frames[0])
    with torch.inference_mode():
        session.state[0][0, 0, 0, 0] = float('nan')   # a diverged state
    r = session.step(frames[1])
    assert r.reset and not r.warm
    assert session.stats.nonfinite_resets == 1
    assert all(torch.isfinite(t).all() for t in session.state)
    assert session.step(frames[2]).warm
    # a model that yields NaN even from zeros: the frame is refused with a typed error
    bad = ContractiveDEQ()
    with torch.no_grad():
        bad.embed.bias.fill_(float('nan'))
    delivered = []
    with pytest.raises(NonFiniteStateError):
        StreamSession(bad).step(frames[0], IterationBudget(iters=3), partial_at=[1, 2],
                                on_partial=delivered.append)
    assert delivered == []                            # no NaN partial reached the caller


@torch.no_grad()
def test_partial_results_are_the_heads_after_k_iterations():
    cfg = get_config('tiny')
    backbone = MDEQBackbone(cfg).eval()
    head = SegmentationHead(cfg.num_channels, 5).eval()
    session = StreamSession(backbone, readout=head)
    x = shifting_frames(n=1, height=64, width=64)[0]
    streamed = []
    r = session.step(x, IterationBudget(iters=3), partial_at=[1, 2, 7],
                     on_partial=streamed.append)
    assert [p.iteration for p in r.partials] == [1, 2] and streamed == r.partials
    u = backbone.inject(x)
    ref1 = unroll(lambda z: backbone.f(z, u), backbone.zeros(u), 1).z
    ref3 = unroll(lambda z: backbone.f(z, u), backbone.zeros(u), 3).z
    assert torch.allclose(r.partials[0].outputs, head(ref1), atol=1e-5)
    assert torch.allclose(r.outputs, head(ref3), atol=1e-5)
    assert r.outputs.shape == (1, 5, 16, 16) and r.iters == 3


def test_iteration_budget_per_frame_override_deadline_and_validation():
    model = ContractiveDEQ()
    session = StreamSession(model)
    four = IterationBudget(iters=4)
    x = shifting_frames(n=1)[0]
    assert session.step(x).iters == IterationBudget().iters == 2     # without one: the default
    assert session.step(x, four).iters == 4
    assert session.step(x, four, iters=1).iters == 1
    assert session.step(x, four).iters == 4
    soon = IterationBudget(iters=50, deadline_ms=1e-6)
    assert session.step(x, soon).iters == 1    # the deadline passed during the first iteration
    for bad in ({'iters': 0}, {'iters': 2.5}, {'iters': True}, {'iters': 2, 'tol': -1.0},
                {'iters': 2, 'deadline_ms': float('nan')}):
        with pytest.raises(ValueError):
            IterationBudget(**bad)
    with pytest.raises(ValueError, match='unknown solver'):
        StreamSession(model, solver='newton')


def test_broyden_session_runs_and_reports_evaluations():
    model = ContractiveDEQ()
    session = StreamSession(model, solver='broyden')
    r = session.step(shifting_frames(n=1)[0], IterationBudget(iters=5))
    assert r.iters == 5 and r.f_evals == 6 and r.final_residual == min(r.residuals)


def test_cost_estimate_follows_load_and_keeps_a_margin():
    est = CostEstimate()
    assert est.ms == 0.0                       # nothing known: nothing reserved
    for _ in range(40):
        est.add(10.0)
    assert 10.0 <= est.ms < 10.5               # steady: the mean, the margin shrinks
    for _ in range(12):                        # the machine gets 3x slower
        est.add(30.0)
    assert est.ms > 27.0
    est.add(float('nan'))
    est.add(-1.0)                              # not durations: ignored
    assert est.ms > 27.0 and math.isfinite(est.ms)


def test_predictive_deadline_stops_before_an_iteration_that_would_not_fit():
    model = ContractiveDEQ()
    x = shifting_frames(n=1)[0]
    planner = DeadlinePlanner()
    planner.observe_iteration(1, 400.0)        # one iteration is known to take 400 ms
    planner.observe_outputs(50.0)
    ahead = IterationBudget(iters=6, deadline_ms=500.0)
    behind = IterationBudget(iters=6, deadline_ms=500.0, deadline_rule='reactive')
    predictive = StreamSession(model, planner=planner)
    reactive = StreamSession(model, planner=planner)
    # the real iterations take well under 500 ms: the predictive rule stops after the first,
    # as its estimate says a second would not fit; the reactive one runs all six
    r = predictive.step(x, ahead)
    assert r.iters == 1 and r.solve_end > 0
    assert reactive.step(x, behind).iters == 6
    # the costs are measured online: the planner took every iteration these solves ran
    assert planner.iteration[(0, 1)].mean < 400.0
    # started in the past: even the first iteration runs late, and it still runs
    late = time.perf_counter() - 1.0
    assert predictive.step(x, ahead, started=late).iters == 1
    assert reactive.step(x, behind, started=late).iters == 1
    # with a deadline that is far away both run the full M
    far = IterationBudget(iters=6, deadline_ms=1e4)
    assert StreamSession(model, planner=DeadlinePlanner()).step(x, far).iters == 6
    with pytest.raises(ValueError, match='deadline_rule must be one of'):
        IterationBudget(deadline_rule='hopeful')


def test_batched_solve_applies_the_predictive_deadline_with_the_batch_cost():
    model = ContractiveDEQ()
    planner = DeadlinePlanner()
    planner.observe_iteration(2, 400.0)        # known for batches of two only
    budget = IterationBudget(iters=5, deadline_ms=300.0)
    pair = [StreamSession(model, planner=planner, name=n) for n in 'ab']
    frames = torch.cat([shifting_frames(n=1)[0]] * 2)
    assert [r.iters for r in step_batch(pair, frames, budget)] == [1, 1]
    single = StreamSession(model, planner=planner)
    assert single.step(frames[:1], budget).iters == 5  # a batch of one has its own (small) cost
