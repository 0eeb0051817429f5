"""Activation capture and its on-disk store."""

from alignscope.activations.capture import CapturePlan, capture_batch
from alignscope.activations.positions import PositionSpec, parse_positions
from alignscope.activations.store import CaptureResult, capture, load_capture

__all__ = ["CapturePlan", "CaptureResult", "PositionSpec", "capture", "capture_batch", "load_capture", "parse_positions"]
