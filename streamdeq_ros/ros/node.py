"""``streamdeq_node``: the StreamSession as a ROS 2 lifecycle node (cameras in, perception out).

Each camera topic gets its own :class:`~streamdeq_ros.stream.StreamSession` on the model's
device. Subscriptions only keep the newest frame per camera (a frame replaced before it was
processed is counted as skipped); a worker thread runs the model, so a fast camera never builds
a backlog. Every output carries the input frame's header unchanged. The model math lives in
:mod:`streamdeq_ros.pipeline`; this module converts, calls and publishes.
"""
import queue
import sys
import threading
import time
from typing import List, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
import torch

from . import OMP_WAIT_POLICY, params as P
from .image_conv import (compressed_to_rgb, image_to_rgb, ImageError, read_compressed,
                         read_image)
from .intake import Camera, camera_prefix, Job, round_robin
from .outputs import (create_camera_publishers, create_label_publishers, heads_for, MASK_USERS,
                      publish_outputs, STAGES, wanted)
from .shutdown import init_with_stop_flag, spin_until_stopped
from .status import camera_diagnostics, status_message
from ..backends import open_net
from ..cuts import CutDetector
from ..model.card import describe
from ..model.checkpoint import CheckpointError, clause
from ..models import resolve_checkpoint
from ..monitor import StreamMonitor
from ..pipeline import FramePipeline
from ..stream import IterationBudget, NonFiniteStateError
from ..threads import CpuMeter, ThreadPolicy, WAIT_POLICY
from ..tracking import IoUTracker

#: solved frames (and partial results) waiting for the output thread; the worker waits when full
OUTPUT_QUEUE = 4


class StartupError(ValueError):
    """Start-up parameter values that cannot work; ``reasons`` holds one sentence per value."""

    def __init__(self, reasons):
        """Keep the refusal sentences."""
        super().__init__('; '.join(reasons))
        self.reasons = list(reasons)


def _descriptor(p: P.Param) -> ParameterDescriptor:
    # Dynamic typing: every check is params.validate's, so refusals read the same at start-up
    # and live, in words, and a float parameter takes integer syntax. The allowed values are
    # stated in additional_constraints (``ros2 param describe``).
    # Read-only parameters are not marked read_only for rclpy either: rclpy would refuse with
    # its own words, and before configure (lifecycle) they may still change.
    text = p.description + (' (read-only while configured)' if p.read_only else '')
    return ParameterDescriptor(description=text, dynamic_typing=True,
                               additional_constraints=p.words())


def budget_of(cfg) -> IterationBudget:
    """Return the iteration budget the parameters ``cfg`` ask for (ValueError if none can)."""
    return IterationBudget(cfg['iters'], cfg['tol'] or None, cfg['deadline_ms'],
                           cfg['deadline_rule'])


class StreamDEQNode(LifecycleNode):
    """Lifecycle node: configure loads the model, activate subscribes, deactivate frees."""

    def __init__(self, **kwargs):
        """Declare the parameters (see :mod:`streamdeq_ros.ros.params`)."""
        super().__init__('streamdeq', **kwargs)
        for p in P.PARAMS:
            self.declare_parameter(p.name, p.default, _descriptor(p))
        values = {p.name: self.get_parameter(p.name).value for p in P.PARAMS}
        refused = P.validate_all(values)
        if refused:
            raise StartupError(refused)
        self.cfg = {n: P.coerce(n, v) for n, v in values.items()}
        self.add_on_set_parameters_callback(self._on_set)
        # threads 0: measured and chosen per load (streamdeq_ros/threads.py); N: exactly N
        # capped by the cores left only when OpenMP teams spin (OMP_WAIT_POLICY not PASSIVE)
        self.policy = ThreadPolicy(P.usable_cores(), self.cfg['threads'],
                                   capped=OMP_WAIT_POLICY.upper() != WAIT_POLICY)
        self.meter = CpuMeter()
        # Only the worker thread computes with several threads. An OpenMP pool on this thread
        # too (it loads the model) makes two pools on the cores, and then OpenMP stops spinning
        # between parallel regions: on 2 cores the worker's model ran 2x slower (issue #12).
        torch.set_num_threads(1)
        self.pipeline: Optional[FramePipeline] = None
        self.cams: List[Camera] = []
        self.cond = threading.Condition()
        self.worker = None
        self.output = None
        self.outq: Optional[queue.Queue] = None
        self._turn = 0                  # round robin over the cameras with a pending frame
        self.running = False
        self.active = False
        self.card = None
        self.device = None
        self._last_warn = 0.0

    # -- parameters ---------------------------------------------------------------------------
    def set_parameters_atomically(self, parameter_list) -> SetParametersResult:
        """Refuse a parameter the node does not have by its name (rclpy's words name none)."""
        missing = [p.name for p in parameter_list if not self.has_parameter(p.name)]
        if missing:
            return SetParametersResult(successful=False, reason=P.unknown(missing[0]))
        return super().set_parameters_atomically(parameter_list)

    def _on_set(self, changes) -> SetParametersResult:
        configured = self.pipeline is not None
        changes = [c for c in changes if c.name in P.BY_NAME]   # rclpy's own (use_sim_time)
        for c in changes:
            reason = P.validate(c.name, c.value, configured=configured)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        new = dict(self.cfg)
        new.update({c.name: P.coerce(c.name, c.value) for c in changes})
        try:
            budget = budget_of(new)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with self.cond:
            self.cfg = new
            if self.pipeline is not None:
                self.pipeline.budget = budget
                for cam in self.cams:
                    if cam.session is not None:
                        cam.session.budget = budget
                        cam.session.solver = self.pipeline.solver_for(new['solver'])
                    if cam.cut is not None:
                        cam.cut.threshold = new['cut_threshold']
            self.policy.set_fixed(new['threads'])
        return SetParametersResult(successful=True)

    # -- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        """Validate the start-up parameters, load the model, create publishers."""
        dev = self.cfg['device']
        if dev == 'auto':
            dev = 'cuda' if torch.cuda.is_available() else 'cpu'
        if dev.startswith('cuda') and not torch.cuda.is_available():
            self.get_logger().error('cannot configure: device %r requested but CUDA is not '
                                    'available' % dev)
            return TransitionCallbackReturn.FAILURE
        path = self.cfg['checkpoint'] or 'the bundled default'
        try:
            path = resolve_checkpoint(self.cfg['checkpoint'])
            size = self.cfg['input_size']
            size = None if size == P.MODEL_SIZE else tuple(size)
            net, card, dev = open_net(path, self.cfg['backend'], dev, size, self.policy.threads)
            pipeline = FramePipeline(net, card, size, self.cfg['solver'] or None,
                                     budget_of(self.cfg))
            pipeline.self_test()        # weights that give NaN stop here, not at every frame
        except (CheckpointError, ValueError, ImportError) as exc:
            self.get_logger().error('cannot configure: %s' % clause(str(exc)))
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:        # noqa: B902 - start-up must say why, whatever failed
            self.get_logger().error('cannot configure: loading %s failed with %s: %s'
                                    % (path, type(exc).__name__, clause(str(exc))))
            return TransitionCallbackReturn.FAILURE
        self.pipeline = pipeline
        self.card, self.device = card, dev
        topics = list(self.cfg['cameras'])
        self.cams = [Camera(t, camera_prefix(t, len(topics))) for t in topics]
        tasks = self.pipeline.tasks
        for cam in self.cams:
            cam.pubs = create_camera_publishers(self, cam.prefix, tasks)
        self.label_pubs = create_label_publishers(
            self, pipeline, Header(stamp=self.get_clock().now().to_msg()))
        self.status_pub = self.create_publisher(String, '~/status', 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.reset_srv = self.create_service(Trigger, '~/reset', self._on_reset)
        self.diag_timer = self.create_timer(1.0, self._diagnostics)
        h, w = self.pipeline.input_size
        self.get_logger().info('configured: %s (%s) on %s, cameras %s; %s'
                               % (path, ', '.join(tasks), dev, ', '.join(topics),
                                  describe(card, (h, w))))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        """Create one session and one subscription per camera; start the worker."""
        qos = QoSProfile(depth=self.cfg['input_depth'], history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.BEST_EFFORT
                         if self.cfg['input_qos'] == 'sensor_data' else
                         ReliabilityPolicy.RELIABLE)
        compressed = self.cfg['input_transport'] == 'compressed'
        for cam in self.cams:
            cam.monitor = StreamMonitor(time.monotonic())
            cam.session = self.pipeline.new_session(cam.topic)
            cam.tracker = IoUTracker()
            cam.cut = CutDetector(self.cfg['cut_threshold'])
            cam.session.solver = self.pipeline.solver_for(self.cfg['solver'])
            topic = cam.topic.rstrip('/') + '/compressed' if compressed else cam.topic
            cam.sub = self.create_subscription(
                CompressedImage if compressed else Image, topic,
                lambda raw, c=cam: self._on_frame(c, raw), qos, raw=True)
            cam.read = read_compressed if compressed else read_image
        self.running = True
        self.outq = queue.Queue(maxsize=OUTPUT_QUEUE)
        self.output = threading.Thread(target=self._output, daemon=True)
        self.output.start()
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()
        self.active = True
        return super().on_activate(state)

    def _stop(self):
        self.active = False
        with self.cond:
            self.running = False
            self.cond.notify_all()
        if self.worker is not None:
            self.worker.join(timeout=30)
            self.worker = None
        if self.output is not None:     # after the worker: the outputs it queued go out first
            self.outq.put(None)
            self.output.join(timeout=30)
            self.output = None
        for cam in self.cams:
            if cam.sub is not None:
                self.destroy_subscription(cam.sub)
                cam.sub = None
            cam.session = None
            cam.tracker = None
            cam.pending = None
            cam.reset_requested = False
        if self.device and self.device.startswith('cuda'):
            torch.cuda.empty_cache()

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        """Stop processing; free the per-camera states."""
        self._stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        """Free the model and the publishers."""
        self._stop()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        """Stop everything."""
        self._stop()
        return TransitionCallbackReturn.SUCCESS

    def _release(self):
        for cam in self.cams:
            for pub in cam.pubs.values():
                self.destroy_publisher(pub)
        for pub in self.label_pubs + [self.status_pub, self.diag_pub]:
            self.destroy_publisher(pub)
        self.destroy_service(self.reset_srv)
        self.destroy_timer(self.diag_timer)
        self.cams = []
        self.pipeline = None
        if self.device and self.device.startswith('cuda'):
            torch.cuda.empty_cache()

    # -- frames -------------------------------------------------------------------------------
    def _on_frame(self, cam: Camera, raw: bytes):
        # the serialized bytes: header and sizes are read from them, the pixels stay a view
        # (never deserialized into a Python message; a frame too large is refused unread)
        try:
            msg = cam.read(raw)
        except ImageError as exc:
            with self.cond:
                cam.received += 1
            self._reject(cam, 'frame rejected: %s' % exc)
            return
        now = time.monotonic()
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        clock = self.get_clock().now().nanoseconds * 1e-9
        with self.cond:
            cam.monitor.received(now, stamp, clock)
            cam.received += 1
            if cam.pending is not None:
                cam.skipped += 1
            cam.pending, cam.pending_since = msg, now
            self.cond.notify()

    def _take(self) -> Optional[list]:
        """Wait for frames; take up to ``max_batch`` cameras' frames in round-robin order.

        Called with ``self.cond`` held. With ``batch_wait_ms``, after the first waiting frame
        it waits that long at most for the other cameras. The turn moves past the last camera
        taken, so with more cameras than ``max_batch`` every camera gets its turn.
        """
        while self.running and not any(c.pending is not None for c in self.cams):
            self.cond.wait(timeout=0.5)
        if not self.running:
            return None
        cfg = self.cfg
        size = min(cfg['max_batch'], len(self.cams)) if self.pipeline.solver_batches(
            self.pipeline.solver_for(cfg['solver'])) else 1
        if size > 1 and cfg['batch_wait_ms'] > 0:
            end = time.monotonic() + cfg['batch_wait_ms'] / 1e3
            while self.running and sum(c.pending is not None for c in self.cams) < size:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(timeout=left)
        order, self._turn = round_robin(self.cams, self._turn, size)
        now = time.monotonic()
        taken = []
        for i in order:
            cam = self.cams[i]
            taken.append((cam, cam.pending, cam.reset_requested, now - cam.pending_since))
            cam.pending, cam.reset_requested = None, False
        return taken

    def _work(self):
        while True:
            with self.cond:
                taken = self._take()
                if taken is None:
                    return
                cfg = dict(self.cfg)
                # busy: more frames than this one are waiting. Then the output thread builds
                # and publishes while the worker solves on the other cores; otherwise the
                # worker spends every core on the frame and computes its mask itself.
                busy = len(taken) > 1 or any(c.pending is not None for c in self.cams)
            threads = self.policy.threads
            # between frames, on the solving thread (OpenMP's thread count is per thread)
            self.pipeline.set_threads(threads)
            try:
                for cam, _, reset, _ in taken:
                    if reset:           # here, between frames, never in the middle of one
                        cam.session.reset()
                        cam.tracker.reset()
                        cam.cut.reset()
                self._process(taken, cfg, busy, threads)
            except Exception as exc:    # noqa: B902 - a frame must never take the node down
                if not self.running or not self.context.ok():
                    return              # shutting down: the frame in flight is not an error
                for cam, _, _, _ in taken:
                    self._reject(cam, 'frame dropped: %s' % exc)

    def _reject(self, cam: Camera, reason: str):
        """Count a dropped frame of ``cam`` (total and recent) and log why (throttled)."""
        with self.cond:
            cam.rejected += 1
            if cam.monitor is not None:
                cam.monitor.rejected(time.monotonic())
        self._warn('camera %s: %s' % (cam.topic, reason))

    def _warn(self, text: str):
        now = time.monotonic()
        if now - self._last_warn > 2.0:
            self._last_warn = now
            self.get_logger().warn(text)

    def _process(self, taken, cfg, busy: bool, threads: int):
        """Convert, solve and read the heads of a batch; queue the outputs for publishing.

        The class masks are left to the output thread when ``busy`` or when no one wants one.
        The batch's cost per camera (prepare, heads and one iteration) goes to the thread
        policy.
        """
        t0 = time.perf_counter()
        limit = cfg['max_input_pixels']
        jobs = []
        for cam, msg, _, wait in taken:
            c0 = time.perf_counter()
            try:
                rgb = compressed_to_rgb(msg, limit) if msg.compressed \
                    else image_to_rgb(msg, limit, cfg['mono16_max'])
            except ImageError as exc:
                self._reject(cam, 'frame rejected: %s' % exc)
                continue
            if cam.session is None:
                continue
            jobs.append(Job(cam, msg, rgb, t0, {'wait': wait * 1e3,
                                                'convert': (time.perf_counter() - c0) * 1e3}))
            jobs[-1].deadline = (cfg['deadline_ms'], cfg['deadline_rule'])
        if not jobs:
            return
        want = {stage: set().union(*(wanted(j.cam.pubs, stage) for j in jobs))
                for stage in STAGES}
        partial = cfg['publish_partial'] and bool(want['partial/'])
        # only the heads that a subscribed output of the batch's cameras is read from
        heads = {stage: heads_for(self.pipeline.tasks, keys) for stage, keys in want.items()}
        kwargs = {'partial_at': [cfg['partial_iters']] if partial else [],
                  'mask_resolution': cfg['mask_resolution'],
                  'score_threshold': cfg['score_threshold'],
                  'heads': heads[''], 'partial_heads': heads['partial/'],
                  'defer_masks': busy or not (want[''] | want['partial/']) & MASK_USERS}

        def on_partial(i, out):
            self._queue(jobs[i].partial(out))

        cuts = [j.cam.cut if cfg['reset_on_cut'] else None for j in jobs]
        first = jobs[0]
        if len(jobs) == 1 and not self.pipeline.solver_batches(first.cam.session.solver):
            kwargs.pop('defer_masks')
            try:
                results = [self.pipeline.process(first.cam.session, first.rgb,
                                                 on_partial=lambda o: on_partial(0, o),
                                                 tracker=first.cam.tracker,
                                                 cut_detector=cuts[0], started=t0, **kwargs)]
            except NonFiniteStateError as exc:
                results = [exc]
        else:
            results = self.pipeline.process_batch(
                [j.cam.session for j in jobs], [j.rgb for j in jobs], on_partial=on_partial,
                trackers=[j.cam.tracker for j in jobs], cut_detectors=cuts, started=t0,
                **kwargs)
        for job, res in zip(jobs, results):
            if isinstance(res, NonFiniteStateError):
                self._reject(job.cam, str(res))
                continue
            job.result, job.out = res
            job.stages.update(job.out.stages_ms)
            job.batch = len(jobs)
            job.threads = threads
            self._queue(job)
        done = [r for r in results if not isinstance(r, NonFiniteStateError)]
        if done:
            result, out = done[0]
            ms = out.stages_ms.get
            # the worker's cost of a one-iteration frame of this batch, per camera
            one = (ms('prepare', 0.0) + ms('heads', 0.0) + ms('solve', 0.0) / max(1, result.iters))
            self.policy.observe(threads, one / len(jobs), self.meter.available(time.monotonic()))

    def _queue(self, job: Job):
        job.queued = time.perf_counter()
        self.outq.put(job)

    def _output(self):
        """Publish what the worker solved, in order (partial results before their frame's)."""
        torch.set_num_threads(1)        # no second OpenMP pool (see __init__)
        while True:
            job = self.outq.get()
            if job is None:
                return
            try:
                self._emit(job)
            except Exception as exc:    # noqa: B902 - an output must never take the node down
                if not self.context.ok():
                    return
                self._warn('camera %s: output dropped: %s' % (job.cam.topic, exc))

    def _emit(self, job: Job):
        cam, msg = job.cam, job.msg
        job.stages['queue'] = job.stages.get('queue', 0.0) + \
            (time.perf_counter() - job.queued) * 1e3
        stage = 'partial/' if job.result is None else ''
        job.published.extend(publish_outputs(self.pipeline, cam.pubs, stage, job.out,
                                             msg.header, job.rgb, job.stages))
        if job.result is None:          # a partial result: its frame's status comes later
            return
        published = job.published
        end = time.perf_counter()
        latency = (end - job.t0) * 1e3
        result, out = job.result, job.out
        self.pipeline.frame_done(result, end)
        deadline = job.deadline[0]
        over = bool(deadline) and latency > deadline
        with self.cond:
            cam.processed += 1
            cam.monitor.processed(time.monotonic(), latency)
            cam.over_deadline += over
            cam.over_deadline_at_one += over and result.iters == 1
        if over and result.iters == 1:
            self._warn('camera %s: %.1f ms, over deadline_ms %g even with one iteration (a '
                       'smaller input_size, mask_resolution network or a looser deadline helps)'
                       % (cam.topic, latency, deadline))
        self.status_pub.publish(status_message(
            cam.topic, msg.header, self.device, self.cfg['input_transport'],
            cam.session.solver, result, out, latency, over, job.deadline, job.batch,
            job.threads, published, job.stages))

    def _on_reset(self, request, response):
        # The worker applies it before each camera's next frame: a reset that arrived while a
        # frame was being solved would otherwise be overwritten by that frame's state.
        with self.cond:
            for cam in self.cams:
                cam.reset_requested = True
        response.success = True
        response.message = 'reset %d camera state(s) (from their next frame)' % len(self.cams)
        return response

    def _diagnostics(self):
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        now = time.monotonic()
        with self.cond:
            cfg = dict(self.cfg)
            rows = [(cam, cam.monitor, cam.session.stats if cam.session is not None else None,
                     (cam.received, cam.processed, cam.skipped, cam.rejected),
                     (cam.over_deadline, cam.over_deadline_at_one))
                    for cam in self.cams]
            threads = self.policy.summary()
            warnings = [cam.monitor.warnings(now, cfg['stale_after_s'])
                        if self.active and cam.monitor is not None else [] for cam in self.cams]
        memory = (torch.cuda.memory_allocated() / 2 ** 20
                  if self.device and self.device.startswith('cuda') else None)
        for (cam, mon, stats, counts, over), warn in zip(rows, warnings):
            arr.status.append(camera_diagnostics(
                cam.topic, self.device, mon, stats, counts, over, cfg, self.active, threads,
                OMP_WAIT_POLICY, warn, now, memory))
        self.diag_pub.publish(arr)


def main(args=None) -> int:
    """Run the node; with ``autostart`` it configures and activates itself.

    SIGINT and SIGTERM stop it in order: the worker finishes its frame, then the node and the
    context go, so a frame in flight is never published into a dead context. Exit codes: 0
    after a signal, 1 when autostart's configure or activate fails, 2 for refused start-up
    parameters (one sentence each on stderr, no traceback).
    """
    stop = init_with_stop_flag(args)
    node = None
    code = 0
    try:
        node = StreamDEQNode()
        if node.cfg['autostart']:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                code = 1
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                code = 1
        if code == 0:
            spin_until_stopped(node, stop)
    except StartupError as exc:
        for sentence in exc.reasons:
            print('streamdeq_node: %s' % sentence, file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:            # noqa: B902 - no start-up path may exit silently
        print('streamdeq_node: cannot start: %s: %s' % (type(exc).__name__, clause(str(exc))),
              file=sys.stderr)
        code = 1
    finally:
        if node is not None:
            node._stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
