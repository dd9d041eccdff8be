"""What the node says about itself: ``~/status`` per frame, ``/diagnostics`` per camera.

Pure functions of what the node counted; the node gathers the numbers under its lock and
publishes what these return.
"""
import json
from typing import Dict, List, Mapping, Optional

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from std_msgs.msg import String


def status_message(camera: str, header, device: str, transport: str, solver: str, result,
                   out, latency_ms: float, over: bool, deadline, batch: int, threads: int,
                   published: List[str], stages: Mapping[str, float],
                   runtime: str = 'torch') -> String:
    """Return the ``~/status`` message of one refined frame (JSON; README topic table).

    ``device``: where the state lives (torch's device); ``runtime``: the backend in words.
    """
    deadline_ms, rule = deadline
    return String(data=json.dumps({
        'camera': camera, 'stamp': [header.stamp.sec, header.stamp.nanosec],
        'frame_id': header.frame_id, 'device': device, 'backend': runtime,
        'input_transport': transport,
        'iters': result.iters, 'solver': solver, 'final_residual': result.final_residual,
        'latency_ms': round(latency_ms, 3),
        'warm': result.warm, 'reset': result.reset, 'cut': out.cut, 'stage': 'refined',
        'over_deadline': over, 'deadline_ms': deadline_ms, 'deadline_rule': rule,
        'partials': [p.iteration for p in result.partials],
        'detections': None if out.detections is None else len(out.detections.ids),
        'persons': None if out.persons is None else len(out.persons.ids),
        'batch': batch, 'threads': threads, 'published': published,
        'stages_ms': {k: round(v, 3) for k, v in stages.items()}}))


def partial_state(cfg: Mapping) -> str:
    """Return what the partial results do under ``cfg``, in words."""
    if not cfg['publish_partial']:
        return 'off'
    if cfg['partial_iters'] >= cfg['iters']:
        return 'none: partial_iters %d >= iters %d' % (cfg['partial_iters'], cfg['iters'])
    return 'after %d iterations' % cfg['partial_iters']


def camera_diagnostics(topic: str, device: Optional[str], monitor, stats, counts, over,
                       cfg: Mapping, active: bool, threads: Mapping, wait_policy: str,
                       warnings: List[str], now: float,
                       device_memory_mb: Optional[float] = None,
                       geometry: Optional[Mapping] = None,
                       runtime: str = 'torch') -> DiagnosticStatus:
    """Return one camera's ``/diagnostics`` entry.

    ``counts``: (received, processed, skipped, rejected); ``over``: (over the deadline, over
    it even at one iteration); ``stats``: the session's reset counters (None when inactive);
    ``threads``: the thread policy's summary; ``geometry``: the camera_info and depth entries
    (a ``geometry_fault`` since the last report is a warning). Inactive: OK and 'inactive',
    whatever happened before deactivation; recent warnings make it WARN.
    """
    received, processed, skipped, rejected = counts
    st = DiagnosticStatus(name='streamdeq: %s' % topic, hardware_id=device or '')
    values: Dict[str, object] = {
        'fps': 0.0, 'input_fps': 0.0, 'latency_p50_ms': '', 'latency_p95_ms': '',
        'received': received, 'processed': processed, 'skipped': skipped,
        'rejected': rejected, 'rejected_recent': 0, 'lost_before_node': 0,
        'lost_before_node_pct': 0.0, 'stamp_faults': 0, 'zero_stamps': 0,
        'future_stamps': 0, 'silent_s': 0.0,
        'resets': stats.resets if stats else 0,
        'nonfinite_resets': stats.nonfinite_resets if stats else 0,
        'cut_resets': stats.cut_resets if stats else 0,
        'over_deadline': over[0], 'over_deadline_at_one_iteration': over[1],
        'iters': cfg['iters'], 'partial': partial_state(cfg), 'active': active,
        'backend': runtime}
    values.update({'threads' if k == 'threads' else 'threads_' + k: v
                   for k, v in threads.items()})
    values['omp_wait_policy'] = wait_policy
    if monitor is not None:
        p50, p95 = monitor.latency_ms(now, 50), monitor.latency_ms(now, 95)
        values.update(
            fps='%.2f' % monitor.fps(now), input_fps='%.2f' % monitor.input_fps(now),
            latency_p50_ms='' if p50 is None else '%.2f' % p50,
            latency_p95_ms='' if p95 is None else '%.2f' % p95,
            rejected_recent=monitor.recent(now, 'rejected'), lost_before_node=monitor.lost,
            lost_before_node_pct='%.1f' % (100 * monitor.loss_fraction(now)),
            stamp_faults=monitor.stamp_faults, zero_stamps=monitor.zero_stamps,
            future_stamps=monitor.future_stamps, silent_s='%.1f' % monitor.silent_for(now))
    if device_memory_mb is not None:
        values['device_memory_mb'] = '%.1f' % device_memory_mb
    if geometry:
        values.update(geometry)
        if geometry.get('geometry_fault') and active:
            warnings = list(warnings) + [geometry['geometry_fault']]
    st.level, st.message = DiagnosticStatus.OK, 'active' if active else 'inactive'
    if warnings:
        st.level, st.message = DiagnosticStatus.WARN, '; '.join(warnings)
    st.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return st
