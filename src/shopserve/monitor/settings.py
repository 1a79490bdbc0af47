"""Monitoring settings, from ``SHOPSERVE_*`` variables (e.g. ``SHOPSERVE_DRIFT_SAMPLE=0.1``)."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from shopserve.config import load_settings


class RequestLog(enum.StrEnum):
    OFF = "off"
    ERRORS = "errors"  # failed (4xx/5xx) and slow requests only
    ALL = "all"


class MonitorSettings(BaseModel):
    """Drift sampling and thresholds, request logging, tracing, feedback and impression logs."""

    model_config = ConfigDict(frozen=True)

    drift_sample: float = Field(default=0.05, ge=0, le=1)  # share of requests profiled
    drift_rows: int = Field(default=4, ge=1)  # rows profiled per sampled ranking request
    drift_window: int = Field(default=2000, ge=10)  # profiled rows kept per version and replica
    drift_window_s: float = Field(default=900.0, gt=0)  # older replica profiles are ignored
    drift_psi: float = Field(default=0.2, gt=0)  # PSI at or over this is drift ...
    drift_p: float = Field(default=0.01, gt=0, lt=1)  # ... when the test's p-value is under this
    drift_min_samples: int = Field(default=100, ge=1)
    request_log: RequestLog = RequestLog.ERRORS
    slow_request_ms: float = Field(default=500.0, gt=0)
    tracing: bool = False  # OpenTelemetry spans (the tracing extra; OTEL_* variables configure)
    # the feedback log is rotated when an append would take it past this size; closed
    # segments are kept unless feedback_keep_segments (the newest kept) is set: it is the record
    feedback_segment_bytes: int = Field(default=64 * 2**20, ge=256)
    feedback_keep_segments: int = Field(default=0, ge=0)  # 0: keep every closed segment
    # each replica's impressions go to segments of this size; the oldest segments (of all
    # replicas) are deleted past impressions_keep_bytes (the join forgets them anyway)
    impressions_segment_bytes: int = Field(default=16 * 2**20, ge=256)
    impressions_keep_bytes: int = Field(default=256 * 2**20, ge=0)


def monitor_settings() -> MonitorSettings:
    return load_settings(MonitorSettings)
