"""Helpers for testing TTG and code built on it: private servers on free ports,
an in-memory broker, fault injection, a clock to step, and worker children in
threads, so a supervisor can be driven in-process."""

from __future__ import annotations

from .clock import FakeClock, SteppedClock
from .faults import Faults, FaultyBroker, FaultyStore
from .memory import MemoryBroker
from .servers import PrivateRedis, RabbitVhost, free_port, stop_process
from .workers import Killed, ThreadChild, ThreadLauncher

__all__ = ["FakeClock", "Faults", "FaultyBroker", "FaultyStore", "Killed", "MemoryBroker", "PrivateRedis",
           "RabbitVhost", "SteppedClock", "ThreadChild", "ThreadLauncher", "free_port", "stop_process"]
