"""The node's frame work: frames in, solved in batches, outputs and reports out.

:class:`FrameWorker` owns what runs between a configure and a cleanup of
:class:`~streamdeq_ros.ros.node.StreamDEQNode`, apart from its lifecycle and parameters: the
cameras' records and their lock, the subscription callback (the newest frame per camera, read
from its serialized bytes), the worker thread (cameras in turn, up to ``max_batch`` solved in
one batch, only the heads the subscribed topics need), the output thread (masks, messages,
``~/status``) and the ``/diagnostics`` entries. The node hands it the pipeline, the cameras,
the thread policy and what it needs of ROS (a logger, the clock, the status publisher, whether
the context is still up); it creates and destroys the subscriptions and publishers itself.
"""
import queue
import threading
import time
from typing import Callable, List, Mapping, Optional

from diagnostic_msgs.msg import DiagnosticArray
import torch

from . import OMP_WAIT_POLICY
from .image_conv import (compressed_to_rgb, DEPTH_VIEWS, image_to_rgb, image_view, ImageError,
                         read_image)
from .intake import Camera, depth_for, info_for, Job, round_robin, stamp_seconds
from .outputs import (class_filter, DEPTH_USERS, FrameGeometry, heads_for, INFO_USERS,
                      MASK_USERS, publish_outputs, STAGES, wanted)
from .status import camera_diagnostics, status_message
from ..runtime.budget import IterationBudget
from ..runtime.cuts import CutDetector
from ..runtime.geometry import DEPTH_ENCODINGS, depth_in_metres, Intrinsics
from ..runtime.monitor import StreamMonitor
from ..runtime.stream import NonFiniteStateError
from ..runtime.tracking import IoUTracker

#: solved frames (and partial results) waiting for the output thread; the worker waits when full
OUTPUT_QUEUE = 4


class FrameWorker:
    """Frames in, outputs out: the cameras, the worker and output threads, the reports."""

    def __init__(self, pipeline, cams: List[Camera], cfg: Mapping, policy, meter, device: str,
                 logger, clock, status_pub, alive: Callable[[], bool],
                 now: Callable[[], float] = time.monotonic, runtime: str = 'torch'):
        """Hold the configured pipeline and cameras; nothing runs before :meth:`start`.

        ``alive()``: whether the ROS context is still up (a frame that fails while it is going
        down is not an error); ``runtime``: the backend in words (``~/status``,
        ``/diagnostics``); ``now()``: the seconds the per-camera rates, silences and event
        windows of ``/diagnostics`` are counted in (the ROS clock under ``use_sim_time``).
        """
        self.pipeline, self.cams, self.cfg = pipeline, cams, dict(cfg)
        self.policy, self.meter, self.device = policy, meter, device
        self.runtime = runtime
        self.logger, self.clock, self.status_pub, self.alive = logger, clock, status_pub, alive
        self.now = now
        self.cond = threading.Condition()
        self.running = False
        self.worker: Optional[threading.Thread] = None
        self.output: Optional[threading.Thread] = None
        self.outq: Optional[queue.Queue] = None
        self._turn = 0                  # round robin over the cameras with a pending frame
        self._last_warn = 0.0
        self.keep = class_filter(pipeline, self.cfg['classes'])

    # -- control (the node's lifecycle and parameter callbacks) --------------------------------
    def apply(self, cfg: Mapping, budget: IterationBudget):
        """Take new parameter values: the budget, the solver, the cut threshold (next frame)."""
        keep = class_filter(self.pipeline, cfg['classes'])      # ValueError: refused
        with self.cond:
            self.cfg = dict(cfg)
            self.keep = keep
            self.pipeline.budget = budget
            for cam in self.cams:
                if cam.session is not None:
                    cam.session.solver = self.pipeline.solver_for(cfg['solver'])
                if cam.cut is not None:
                    cam.cut.threshold = cfg['cut_threshold']

    def start(self):
        """Give every camera a fresh session, tracker and cut detector; start the threads."""
        cfg = self.cfg
        for cam in self.cams:
            cam.monitor = StreamMonitor(self.now())
            cam.session = self.pipeline.new_session(cam.topic)
            cam.tracker = IoUTracker()
            cam.cut = CutDetector(cfg['cut_threshold'])
            cam.session.solver = self.pipeline.solver_for(cfg['solver'])
        self.running = True
        self.outq = queue.Queue(maxsize=OUTPUT_QUEUE)
        self.output = threading.Thread(target=self._output, daemon=True)
        self.output.start()
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()

    def stop(self):
        """Stop the threads (the outputs already queued go out first); free the states."""
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
        with self.cond:
            for cam in self.cams:
                cam.session = None
                cam.tracker = None
                cam.pending = None
                cam.reset_requested = False

    def request_reset(self) -> int:
        """Restart every camera from zeros before its next frame; return how many."""
        # The worker applies it before each camera's next frame: a reset that arrived while a
        # frame was being solved would otherwise be overwritten by that frame's state.
        with self.cond:
            for cam in self.cams:
                cam.reset_requested = True
            return len(self.cams)

    # -- frames ---------------------------------------------------------------------------------
    def on_info(self, cam: Camera, msg):
        """Keep ``msg`` as one of ``cam``'s recent camera_info messages."""
        stamp = stamp_seconds(msg.header.stamp)
        with self.cond:
            cam.infos.append((stamp, msg))

    def on_depth(self, cam: Camera, raw: bytes):
        """Keep the depth image ``raw`` (serialized) as one of ``cam``'s recent ones."""
        try:
            msg = read_image(raw)
            if msg.encoding.lower() not in DEPTH_ENCODINGS:
                raise ImageError('encoding %r (depth images must be 16UC1 in millimetres, '
                                 'mono16 or 32FC1 in metres)' % msg.encoding)
        except ImageError as exc:
            with self.cond:
                cam.depth_rejected += 1
                cam.geometry_fault('depth image rejected: %s' % exc)
            self._warn('camera %s: depth image on %s rejected: %s'
                       % (cam.topic, cam.depth_topic, exc))
            return
        stamp = stamp_seconds(msg.header.stamp)
        with self.cond:
            cam.depths.append((stamp, msg))

    def on_frame(self, cam: Camera, raw: bytes):
        """Keep ``raw`` as ``cam``'s newest frame (the subscription callback)."""
        # the serialized bytes: header and sizes are read from them, the pixels stay a view
        # (never deserialized into a Python message; a frame too large is refused unread)
        try:
            msg = cam.read(raw)
        except ImageError as exc:
            with self.cond:
                cam.received += 1
            self._reject(cam, 'frame rejected: %s' % exc)
            return
        arrived = time.monotonic()
        stamp = stamp_seconds(msg.header.stamp)
        clock = self.clock.now().nanoseconds * 1e-9
        with self.cond:
            cam.monitor.received(self.now(), stamp, clock)
            cam.received += 1
            if cam.pending is not None:
                cam.skipped += 1
            cam.pending, cam.pending_since = msg, arrived
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
                if not self.running or not self.alive():
                    return              # shutting down: the frame in flight is not an error
                for cam, _, _, _ in taken:
                    self._reject(cam, 'frame dropped: %s' % exc)

    def _reject(self, cam: Camera, reason: str):
        """Count a dropped frame of ``cam`` (total and recent) and log why (throttled)."""
        with self.cond:
            cam.rejected += 1
            if cam.monitor is not None:
                cam.monitor.rejected(self.now())
        self._warn('camera %s: %s' % (cam.topic, reason))

    def _warn(self, text: str):
        now = time.monotonic()
        if now - self._last_warn > 2.0:
            self._last_warn = now
            self.logger.warn(text)

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
        torch.set_num_threads(1)        # no second OpenMP pool (see the node's __init__)
        while True:
            job = self.outq.get()
            if job is None:
                return
            try:
                self._emit(job)
            except Exception as exc:    # noqa: B902 - an output must never take the node down
                if not self.alive():
                    return
                self._warn('camera %s: output dropped: %s' % (job.cam.topic, exc))

    def _geometry(self, job: Job) -> Optional[FrameGeometry]:
        """Return the camera_info (and depth) of a refined frame whose outputs need them.

        None when no subscribed output needs camera_info, or when what they need is missing
        or does not fit the frame (counted, and said in ``/diagnostics``).
        """
        cam, header = job.cam, job.msg.header
        want = wanted(cam.pubs, '')
        if not want & INFO_USERS:
            return None
        stamp = stamp_seconds(header.stamp)
        h, w = job.rgb.shape[:2]
        with self.cond:
            info = info_for(cam.infos, stamp)
            depth = depth_for(cam.depths, stamp, self.cfg['sync_tolerance_s']) \
                if want & DEPTH_USERS else None
        fault = None
        try:
            if info is None:
                cam.no_info += 1
                raise ValueError('no camera_info received on %s' % cam.info_topic)
            if (info.width, info.height) != (w, h):
                raise ValueError('camera_info on %s is for %dx%d images, the frame is %dx%d'
                                 % (cam.info_topic, info.width, info.height, w, h))
            geo = FrameGeometry(info, Intrinsics.from_k(info.k, w, h))
            if want & DEPTH_USERS:
                if depth is None:
                    cam.no_depth += 1
                    fault = ('no depth image on %s within sync_tolerance_s %g s of the frame'
                             % (cam.depth_topic, self.cfg['sync_tolerance_s']))
                elif (depth.width, depth.height) != (w, h):
                    cam.depth_rejected += 1
                    fault = ('the depth image on %s is %dx%d, the frame %dx%d (depth must be '
                             'registered to the colour image)'
                             % (cam.depth_topic, depth.width, depth.height, w, h))
                else:
                    try:                # a malformed depth image costs only the 3D outputs
                        geo.depth = depth_in_metres(image_view(depth, encodings=DEPTH_VIEWS),
                                                    depth.encoding)
                    except (ValueError, ImageError) as exc:
                        cam.depth_rejected += 1
                        fault = 'depth image on %s rejected: %s' % (cam.depth_topic, exc)
        except (ValueError, ImageError) as exc:
            geo, fault = None, str(exc)
        if fault is not None:
            with self.cond:
                cam.geometry_fault(fault)
            self._warn('camera %s: %s' % (cam.topic, fault))
        return geo

    def _emit(self, job: Job):
        cam, msg = job.cam, job.msg
        job.stages['queue'] = job.stages.get('queue', 0.0) + \
            (time.perf_counter() - job.queued) * 1e3
        stage = 'partial/' if job.result is None else ''
        geo = self._geometry(job) if stage == '' else None
        job.published.extend(publish_outputs(self.pipeline, cam.pubs, stage, job.out,
                                             msg.header, job.rgb, job.stages, geo, self.keep))
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
            cam.monitor.processed(self.now(), latency)
            cam.over_deadline += over
            cam.over_deadline_at_one += over and result.iters == 1
        if over and result.iters == 1:
            self._warn('camera %s: %.1f ms, over deadline_ms %g even with one iteration (a '
                       'smaller input_size, mask_resolution network or a looser deadline helps)'
                       % (cam.topic, latency, deadline))
        self.status_pub.publish(status_message(
            cam.topic, msg.header, self.device, self.cfg['input_transport'],
            cam.session.solver, result, out, latency, over, job.deadline, job.batch,
            job.threads, published, job.stages, self.runtime))

    @staticmethod
    def _geometry_values(cam: Camera) -> dict:
        """Return a camera's camera_info and depth entries; take its last fault (under lock)."""
        values = {'camera_info_topic': cam.info_topic,
                  'camera_info': 'received' if cam.infos else 'none yet',
                  'depth_topic': cam.depth_topic or 'off', 'no_camera_info': cam.no_info,
                  'no_depth': cam.no_depth, 'depth_rejected': cam.depth_rejected,
                  'geometry_fault': '; '.join(cam.geometry_faults)}
        cam.geometry_faults = []
        return values

    def diagnostics(self, active: bool) -> DiagnosticArray:
        """Return one ``/diagnostics`` entry per camera (``active``: the node's state)."""
        arr = DiagnosticArray()
        arr.header.stamp = self.clock.now().to_msg()
        now = self.now()
        with self.cond:
            cfg = dict(self.cfg)
            rows = [(cam, cam.monitor, cam.session.stats if cam.session is not None else None,
                     (cam.received, cam.processed, cam.skipped, cam.rejected),
                     (cam.over_deadline, cam.over_deadline_at_one), self._geometry_values(cam))
                    for cam in self.cams]
            threads = self.policy.summary()
            warnings = [cam.monitor.warnings(now, cfg['stale_after_s'])
                        if active and cam.monitor is not None else [] for cam in self.cams]
        memory = (torch.cuda.memory_allocated() / 2 ** 20
                  if self.device and self.device.startswith('cuda') else None)
        for (cam, mon, stats, counts, over, geometry), warn in zip(rows, warnings):
            arr.status.append(camera_diagnostics(
                cam.topic, self.device, mon, stats, counts, over, cfg, active, threads,
                OMP_WAIT_POLICY, warn, now, memory, geometry, self.runtime))
        return arr
