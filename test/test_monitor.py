"""StreamMonitor: windowed rates, silence, the estimate of frames lost before the node, stamps."""
import pytest

from streamdeq_ros.runtime.monitor import StreamMonitor


def _feed(m, stamps, arrivals, clock=None):
    for t, s in zip(arrivals, stamps):
        m.received(now=t, stamp_s=s, clock_s=clock)


def test_lost_frames_are_estimated_from_gaps_in_the_stamps():
    m = StreamMonitor(start=0.0)
    period = 1 / 30
    sent = [k for k in range(300) if k % 3 != 2]             # every third frame never arrives
    for k in sent:
        m.received(now=k * period + 0.002, stamp_s=1000 + k * period)
    assert m.period() == pytest.approx(period, rel=0.01)
    assert m.lost == 300 - len(sent) - 1     # 99: frame 299 is lost too, but nothing came after
    assert m.loss_fraction() == pytest.approx(1 / 3, abs=0.01)
    assert m.loss_fraction(now=300 * period) == pytest.approx(1 / 3, abs=0.02)   # windowed
    assert any(w.startswith('about 33 % of the frames lost') for w in m.warnings(10.0, 2.0))
    assert m.stamp_faults == 0


def test_jitter_counts_nothing_and_repeats_or_a_restarted_source_are_stamp_faults():
    m = StreamMonitor(start=0.0)
    t = 0.0
    for k in range(100):
        jitter = 0.004 if k % 2 else -0.004                 # +-12 % of a 30 Hz period
        t = k / 30 + jitter
        m.received(now=t, stamp_s=500 + t)
    m.received(now=t + 0.01, stamp_s=500 + t)               # the same stamp again
    m.received(now=t + 0.02, stamp_s=10.0)                  # a source that restarted its clock
    assert m.lost == 0 and m.count == 102 and m.stamp_faults == 2


def test_one_stamp_an_hour_ahead_is_a_fault_not_36000_lost_and_its_warning_clears():
    # the review's case: 40 clean frames at 10 Hz, one stamped an hour ahead, 160 clean after
    for jump in (3600.0, 2 ** 31 - 1):
        m = StreamMonitor(start=0.0)
        arrivals = [k / 10 for k in range(201)]
        stamps = [100 + k / 10 for k in range(201)]
        stamps[40] += jump
        _feed(m, stamps, arrivals)
        assert m.lost == 0 and m.stamp_faults == 2          # the jump, and the way back
        assert m.loss_fraction(20.0) == 0.0
        assert m.warnings(20.0, 2.0) == []                  # 16 s later: nothing left
        m2 = StreamMonitor(start=0.0)
        _feed(m2, stamps[:45], arrivals[:45])
        assert m2.warnings(4.5, 2.0) == ['2 frames with a bad header stamp (repeated, '
                                         'backwards, jumping, zero or in the future) in the '
                                         'last 10 s']


def test_a_camera_that_pauses_is_silent_not_lossy():
    m = StreamMonitor(start=0.0)
    arrivals = [k / 10 for k in range(50)] + [10.0 + k / 10 for k in range(50)]   # 5 s pause
    _feed(m, [1000 + t for t in arrivals], arrivals)
    assert m.lost == 0 and m.stamp_faults == 0
    assert m.warnings(14.9, 2.0) == []
    during = StreamMonitor(start=0.0)
    _feed(during, [1000 + t for t in arrivals[:50]], arrivals[:50])
    assert during.warnings(4.9 + 3.0, 2.0) == ['no frame for 3 s']


def test_a_replay_faster_than_recorded_counts_no_fault_and_no_loss():
    m = StreamMonitor(start=0.0)
    _feed(m, [k / 30 for k in range(300)], [k / 150 for k in range(300)])   # 5x, no /clock
    assert m.lost == 0 and m.stamp_faults == 0


def test_zero_and_future_stamps_are_counted_and_rejections_warn_only_while_recent():
    m = StreamMonitor(start=0.0)
    m.received(now=0.0, stamp_s=0.0, clock_s=1000.0)
    m.received(now=0.1, stamp_s=1500.0, clock_s=1000.1)      # 500 s ahead of the node's clock
    m.received(now=0.2, stamp_s=1000.2, clock_s=1000.2)
    assert (m.zero_stamps, m.future_stamps) == (1, 1)
    m.rejected(1.0)
    assert '1 frames rejected in the last 10 s (1 in all)' in m.warnings(1.5, 100.0)
    assert not any('rejected' in w for w in m.warnings(12.0, 100.0))
    assert m.rejects == 1 and m.recent(12.0, 'rejected') == 0


def test_rates_fall_to_zero_when_a_camera_stops():
    m = StreamMonitor(start=0.0, window_s=5.0)
    for k in range(100):                                     # 10 Hz for 10 s
        m.received(now=k / 10, stamp_s=k / 10)
        m.processed(now=k / 10 + 0.02, latency_ms=20.0)
    assert m.fps(10.0) == pytest.approx(10.0, abs=0.3)
    assert m.input_fps(10.0) == pytest.approx(10.0, abs=0.3)
    assert m.latency_ms(10.0, 95) == pytest.approx(20.0)
    assert m.silent_for(30.0) == pytest.approx(30.0 - 9.9)
    assert m.fps(30.0) == 0.0 and m.input_fps(30.0) == 0.0 and m.latency_ms(30.0, 50) is None


def test_a_camera_that_never_sent_is_silent_since_start():
    m = StreamMonitor(start=100.0)
    assert m.silent_for(103.5) == pytest.approx(3.5) and m.fps(101.0) == 0.0
    assert m.loss_fraction() == 0.0 and m.loss_fraction(103.5) == 0.0
