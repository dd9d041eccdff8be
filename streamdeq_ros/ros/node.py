"""``streamdeq_node``: the StreamSession as a ROS 2 lifecycle node (cameras in, perception out).

Each camera topic gets its own :class:`~streamdeq_ros.runtime.stream.StreamSession` on the
model's device. Subscriptions only keep the newest frame per camera (a frame replaced before it
was processed is counted as skipped); a worker thread runs the model, so a fast camera never
builds a backlog. Every output carries the input frame's header unchanged. The model math lives
in :mod:`streamdeq_ros.runtime.pipeline`; the frame work in :mod:`streamdeq_ros.ros.worker`;
this module holds the lifecycle and the parameters. The outputs are lifecycle publishers: they
publish only while the node is active (``/diagnostics`` also reports an inactive node).
"""
import time
from typing import List, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.expand_topic_name import expand_topic_name
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.validate_full_topic_name import validate_full_topic_name
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
import torch

from . import OMP_WAIT_POLICY, params as P
from .image_conv import read_compressed, read_image
from .intake import Camera, camera_prefix
from .outputs import class_filter, create_camera_publishers, create_label_publishers
from .worker import FrameWorker
from ..model.card import describe
from ..model.checkpoint import CheckpointError, clause
from ..models import resolve_checkpoint
from ..runtime.backends import open_net
from ..runtime.budget import IterationBudget
from ..runtime.pipeline import FramePipeline
from ..runtime.threads import CpuMeter, ThreadPolicy, WAIT_POLICY


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
        # threads 0: measured and chosen per load (streamdeq_ros/runtime/threads.py); N: exactly N
        # capped by the cores left only when OpenMP teams spin (OMP_WAIT_POLICY not PASSIVE)
        self.policy = ThreadPolicy(P.usable_cores(), self.cfg['threads'],
                                   capped=OMP_WAIT_POLICY.upper() != WAIT_POLICY)
        self.meter = CpuMeter()
        # Only the worker thread computes with several threads. An OpenMP pool on this thread
        # too (it loads the model) makes two pools on the cores, and then OpenMP stops spinning
        # between parallel regions: on 2 cores the worker's model ran 2x slower (issue #12).
        torch.set_num_threads(1)
        self.pipeline: Optional[FramePipeline] = None
        self.frames: Optional[FrameWorker] = None     # from configure to cleanup
        self.cams: List[Camera] = []
        self.active = False
        self.card = None
        self.device = None

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
        if self.frames is not None:
            try:
                self.frames.apply(new, budget)
            except ValueError as exc:       # classes the model does not have
                return SetParametersResult(successful=False, reason=str(exc))
        old, self.cfg = self.cfg, new
        self.policy.set_fixed(new['threads'])
        if self.active and new['score_threshold'] != old['score_threshold']:
            self._publish_labels()          # LabelInfo.threshold says the new one
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
            net, card, dev, runtime = open_net(path, self.cfg['backend'], dev, size,
                                               self.policy.threads)
            pipeline = FramePipeline(net, card, size, self.cfg['solver'] or None,
                                     budget_of(self.cfg))
            pipeline.self_test()        # weights that give NaN stop here, not at every frame
            class_filter(pipeline, self.cfg['classes'])
            cams = self._cameras()
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
        self.cams = cams
        tasks = self.pipeline.tasks
        for cam in self.cams:
            cam.pubs = create_camera_publishers(self, cam.prefix, tasks, bool(cam.depth_topic))
        self.label_pubs = create_label_publishers(self, pipeline)
        self.status_pub = self.create_lifecycle_publisher(String, '~/status', 10)
        # not a lifecycle publisher: an inactive node still says so
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.frames = FrameWorker(pipeline, self.cams, self.cfg, self.policy, self.meter, dev,
                                  self.get_logger(), self.get_clock(), self.status_pub,
                                  self.context.ok, self._monitor_clock(), runtime)
        self.reset_srv = self.create_service(Trigger, '~/reset', self._on_reset)
        # every wall second, also under use_sim_time (a paused bag is still reported)
        self.diag_timer = self.create_timer(1.0, self._diagnostics,
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))
        h, w = self.pipeline.input_size
        self.get_logger().info('configured: %s (%s) on %s, %s, cameras %s; %s'
                               % (path, ', '.join(tasks), dev, runtime, ', '.join(topics),
                                  describe(card, (h, w))))
        return TransitionCallbackReturn.SUCCESS

    def _cameras(self) -> List[Camera]:
        """Return the cameras' records; say so when two share a camera_info topic.

        (Cameras in one namespace, /robot/cam0 and /robot/cam1, both have the sibling
        /robot/camera_info: it is read for both, which suits only identical cameras.)
        """
        topics = list(self.cfg['cameras'])
        per = {n: (list(self.cfg[n]) if list(self.cfg[n]) != [''] else [''] * len(topics))
               for n in P.PER_CAMERA}
        cams = [Camera(t, camera_prefix(t, len(topics)), info, depth) for t, info, depth
                in zip(topics, per['camera_info_topics'], per['depth_topics'])]
        for cam in cams:                # rcl's own check, said before anything subscribes
            for topic in filter(None, (cam.topic, cam.info_topic, cam.depth_topic)):
                validate_full_topic_name(expand_topic_name(topic, self.get_name(),
                                                           self.get_namespace()))
        seen = {}
        for cam in cams:
            if cam.info_topic in seen:
                self.get_logger().warn(
                    'cameras %s and %s both read camera_info from %s (the image_pipeline '
                    'sibling of both); name one per camera in camera_info_topics unless they '
                    'are identical' % (seen[cam.info_topic], cam.topic, cam.info_topic))
            seen[cam.info_topic] = cam.topic
        return cams

    def _monitor_clock(self):
        """Return the clock of the per-camera statistics: the ROS clock under use_sim_time."""
        if not self.get_parameter('use_sim_time').value:
            return time.monotonic
        clock = self.get_clock()
        return lambda: clock.now().nanoseconds * 1e-9

    def _publish_labels(self):
        header = Header(stamp=self.get_clock().now().to_msg())
        for pub, message in self.label_pubs:
            msg = message(self.cfg['score_threshold'])
            msg.header = header
            pub.publish(msg)

    def on_activate(self, state) -> TransitionCallbackReturn:
        """Enable the outputs; create one session and one subscription per camera; start."""
        done = super().on_activate(state)           # the lifecycle publishers publish from here
        if done != TransitionCallbackReturn.SUCCESS:
            return done
        self._publish_labels()
        qos = QoSProfile(depth=self.cfg['input_depth'], history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.BEST_EFFORT
                         if self.cfg['input_qos'] == 'sensor_data' else
                         ReliabilityPolicy.RELIABLE)
        compressed = self.cfg['input_transport'] == 'compressed'
        self.frames.start()
        for cam in self.cams:
            topic = cam.topic.rstrip('/') + '/compressed' if compressed else cam.topic
            cam.read = read_compressed if compressed else read_image
            cam.sub = self.create_subscription(
                CompressedImage if compressed else Image, topic,
                lambda raw, c=cam: self.frames.on_frame(c, raw), qos, raw=True)
            cam.info_sub = self.create_subscription(
                CameraInfo, cam.info_topic, lambda m, c=cam: self.frames.on_info(c, m), qos)
            if cam.depth_topic:
                cam.depth_sub = self.create_subscription(
                    Image, cam.depth_topic, lambda raw, c=cam: self.frames.on_depth(c, raw),
                    qos, raw=True)
        self.active = True
        return TransitionCallbackReturn.SUCCESS

    def _stop(self):
        self.active = False
        for cam in self.cams:
            for sub in (cam.sub, cam.info_sub, cam.depth_sub):
                if sub is not None:
                    self.destroy_subscription(sub)
            cam.sub = cam.info_sub = cam.depth_sub = None
        if self.frames is not None:
            self.frames.stop()
        if self.device and self.device.startswith('cuda'):
            torch.cuda.empty_cache()

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        """Stop processing (the outputs in flight go out); free the states; mute the outputs."""
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
                self.destroy_lifecycle_publisher(pub)
        for pub in [p for p, _ in self.label_pubs] + [self.status_pub]:
            self.destroy_lifecycle_publisher(pub)
        self.destroy_publisher(self.diag_pub)
        self.destroy_service(self.reset_srv)
        self.destroy_timer(self.diag_timer)
        self.cams = []
        self.frames = None
        self.pipeline = None
        if self.device and self.device.startswith('cuda'):
            torch.cuda.empty_cache()

    def _on_reset(self, request, response):
        response.success = True
        response.message = ('reset %d camera state(s) (from their next frame)'
                            % self.frames.request_reset())
        return response

    def _diagnostics(self):
        self.diag_pub.publish(self.frames.diagnostics(self.active))
