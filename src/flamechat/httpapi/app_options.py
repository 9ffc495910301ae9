"""What every Flame Chat FastAPI application is built with."""

from __future__ import annotations

from fastapi.telemetry import TelemetryConfig

# Flame Chat exports no OpenTelemetry data. Left on, FastAPI asks OpenTelemetry
# for its providers on every request (environment lookups included): about 2 %
# of a node's CPU under load in bench/delivery.py, for nothing.
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
