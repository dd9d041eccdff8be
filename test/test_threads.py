"""ThreadPolicy: the solver's thread count follows the measured cost as the load changes."""
import numpy as np

from streamdeq_ros.runtime.threads import ladder, ThreadPolicy

# ms per iteration, as measured on this machine with the default model (docs/benchmarks.md "A busy
# computer"): idle, 2 threads are the faster; with 2 busy processes, 1 thread is. The cores
# left for the node (CpuMeter) are about 1.9 idle and 0.6 beside two busy processes.
COSTS = {'idle': {1: 12.0, 2: 10.0}, 'busy': {1: 20.0, 2: 40.0}}
AVAILABLE = {'idle': 1.9, 'busy': 0.6}


def _run(policy, loads, rng, costs=COSTS, noise=0.35, available=None):
    used, paid = [], []
    for load in loads:
        n = policy.threads
        used.append(n)
        paid.append(costs[load][n] * rng.lognormal(0.0, noise))     # +-35 % per frame
        policy.observe(n, paid[-1], None if available is None else available[load])
    return np.array(used), np.array(paid)


def test_the_count_follows_the_load_both_ways_with_medians_near_the_best():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        policy = ThreadPolicy(cores=2)
        loads = ['idle'] * 300 + ['busy'] * 300 + ['idle'] * 300
        used, paid = _run(policy, loads, rng)
        busy = slice(350, 600)
        assert (used[busy] == 1).mean() > 0.8, seed          # 1 in 10 frames looks at 2
        # each steady phase's median cost is within 15 % of the best fixed count's
        for phase, best in ((slice(50, 300), 10.0), (busy, 20.0), (slice(650, 900), 10.0)):
            assert np.median(paid[phase]) < 1.15 * best, (seed, phase)
        assert policy.switches >= 2
    summary = policy.summary()
    assert summary['mode'] == 'adaptive' and set(summary['ms_per_frame']) == {1, 2}


def test_with_the_cores_measured_a_count_without_room_is_never_tried():
    rng = np.random.default_rng(4)
    policy = ThreadPolicy(cores=2)
    loads = ['idle'] * 200 + ['busy'] * 300 + ['idle'] * 200
    used, paid = _run(policy, loads, rng, available=AVAILABLE)
    # from the first frame that sees the load, no frame at 2 beside the busy processes
    assert (used[201:500] == 1).all()
    assert (used[560:] == 2).mean() > 0.75 and policy.summary()['cap'] == 2


def test_uncapped_the_measured_costs_alone_decide():
    # with OMP_WAIT_POLICY=PASSIVE the node does not cap: 2 threads stay in use beside the
    # load when they measure cheaper, whatever the meter says is left
    rng = np.random.default_rng(1)
    policy = ThreadPolicy(cores=2, capped=False)
    costs = {'idle': {1: 12.0, 2: 10.0}, 'busy': {1: 50.0, 2: 44.0}}
    used, _ = _run(policy, ['busy'] * 300, rng, costs=costs, available=AVAILABLE)
    assert (used[100:] == 2).mean() > 0.75
    summary = policy.summary()
    assert summary['cap'] == 2 and summary['cores_available'] == 0.6


def test_the_node_reports_the_wait_policy_its_environment_names():
    import os
    import subprocess
    import sys
    code = 'import streamdeq_ros.ros as r; print(r.OMP_WAIT_POLICY)'
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == 'unset (libgomp default)'
    env['OMP_WAIT_POLICY'] = 'passive'
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == 'passive'


def test_the_cpu_meter_reads_this_machine():
    import time

    from streamdeq_ros.runtime.threads import CpuMeter
    meter = CpuMeter(window_s=0.5)
    assert meter.available(time.monotonic()) is None             # one sample: not yet
    end = time.monotonic() + 0.4
    while time.monotonic() < end:
        pass                                                      # this process: one core
    got = meter.available(time.monotonic())
    assert got is not None and 0.5 < got <= len(meter.cpus) + 0.2
    missing = CpuMeter(proc='/nonexistent')
    assert missing.available(time.monotonic()) is None


def test_a_load_is_answered_within_a_few_dozen_frames():
    rng = np.random.default_rng(1)
    policy = ThreadPolicy(cores=2)
    _run(policy, ['idle'] * 500, rng)
    used, _ = _run(policy, ['busy'] * 80, rng)
    assert (used[40:] == 1).mean() >= 0.85, used


def test_a_count_the_user_sets_is_kept_and_one_core_never_explores():
    rng = np.random.default_rng(2)
    fixed = ThreadPolicy(cores=2, fixed=2)
    assert (_run(fixed, ['busy'] * 200, rng)[0] == 2).all()
    assert fixed.summary()['mode'] == 'fixed' and fixed.log_cost == {}
    fixed.set_fixed(0)                                # back to adaptive from here
    assert (_run(fixed, ['busy'] * 200, rng)[0][100:] == 1).mean() > 0.85
    alone = ThreadPolicy(cores=1)
    assert (_run(alone, ['idle'] * 100, rng)[0] == 1).all() and alone.switches == 0


def test_the_ladder_on_bigger_machines():
    assert ladder(1) == [1] and ladder(2) == [1, 2] and ladder(6) == [1, 2, 4, 6]
    assert ladder(16) == [1, 2, 4, 8, 16]
    costs = {'x': {1: 40.0, 2: 21.0, 4: 11.0, 8: 7.0, 16: 9.0}}   # 8 of 16 is the best here
    used, _ = _run(ThreadPolicy(cores=16), ['x'] * 600, np.random.default_rng(3), costs, 0.2)
    assert (used[300:] == 8).mean() > 0.8
