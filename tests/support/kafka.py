"""A real Apache Kafka broker for tests: one KRaft node (broker + controller), data on disk.

The jars come from ``scripts/fetch-kafka`` (Maven Central, cached). ``bootstrap``, ``start``/``astart``,
``stop``/``astop``, plus ``kill`` (SIGKILL) and ``restart`` that keep the data directory and the ports, so a
test can check what survives a crash. The broker's log is ``<dir>/kafka.log`` (and ``kafka.out`` for the
JVM's own output).

A JVM takes seconds to start, so tests share one broker and keep apart by :class:`KafkaForTest`'s namespace
(a prefix on every topic and group name, the ``kafka_namespace`` setting); only a test that stops or kills
the broker gets one of its own.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from spendgate.core.bus.kafka import KafkaBus
from tests.support.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
FETCH = ROOT / "scripts" / "fetch-kafka"

JVM_OPTS = [
    "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
]
"""Small heap and fast JVM start: a test broker holds little, and CI has 2 cores."""

# Class-data sharing: the first clean run of each main class writes a dynamic CDS archive of the classes it
# loaded (-XX:ArchiveClassesAtExit) next to the jars; later runs map it (-XX:SharedArchiveFile) and start
# about twice as fast (broker 3.3 s -> 1.8 s here). An archive that no longer matches the jars or the JVM is
# ignored by the JVM (-Xshare:auto is the default), never fatal.

TEST_SETTINGS = {
    "num.partitions": "4",
    "auto.create.topics.enable": "true",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # Lets tests use short consumer-group timings (production brokers keep the 6 s default).
    "group.min.session.timeout.ms": "500",
    # After a SIGKILL the controller keeps the dead incarnation's session until this times out (default
    # 9 s): the restarted broker waits that long before it is unfenced.
    "broker.session.timeout.ms": "2000",
    "broker.heartbeat.interval.ms": "500",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "background.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
    "log.cleaner.threads": "1",
}

FAST_GROUP = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 100, "rebalance_timeout_ms": 1000}
"""Consumer-group timings for tests: a SIGKILLed member is dropped from its group after 1 s, not 10 s
(``group.min.session.timeout.ms`` above lets the test broker accept them)."""

LOG4J2 = """\
status = warn
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
logger.lifecycle.name = kafka.server.KafkaRaftServer
logger.lifecycle.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
"""


def kafka_libs() -> Path:
    """The jars' directory: SPENDGATE_KAFKA_LIBS, else what ``scripts/fetch-kafka`` prints (fetching once)."""
    given = os.environ.get("SPENDGATE_KAFKA_LIBS")
    if given:
        return Path(given)
    out = subprocess.run([str(FETCH)], check=True, capture_output=True, text=True, timeout=900)
    return Path(out.stdout.strip().splitlines()[-1])


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("Apache Kafka needs Java 17+: no `java` on the PATH and no JAVA_HOME")
    return found


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 (Kafka refuses ids starting with '-')."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    """One Apache Kafka node in KRaft combined mode on free 127.0.0.1 ports, its data under ``base_dir``."""

    def __init__(self, base_dir: Path | None = None, *, libs: Path | None = None,
                 settings: dict[str, str] | None = None, node_id: int = 1, cluster_id: str | None = None,
                 ports: tuple[int, int] | None = None, voters: str | None = None) -> None:
        """Alone by default (a single voter); :class:`KafkaCluster` passes a node id, the cluster's id, this
        node's (broker, controller) ports and the static quorum ``voters`` (``id@host:port,…``)."""
        self._own_dir = base_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="kafka-")) if base_dir is None else Path(base_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.log_file = self.dir / "kafka.log"
        self.libs = libs
        self.port, self.controller_port = ports or free_ports(2)
        self.settings = {**TEST_SETTINGS, **(settings or {})}
        self.node_id = node_id
        self.voters = voters
        self.cluster_id = cluster_id or new_cluster_id()
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_start_s: float | None = None
        """How long the last start took, from launching the JVM to the broker answering a metadata request."""
        self._formatted = False
        self._pending_archive: tuple[Path, Path] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- configuration -------------------------------------------------------------------------

    def _properties(self) -> dict[str, str]:
        """The broker's ``server.properties`` (a subclass adds listeners: :mod:`tests.support.kafka_secure`)."""
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **({"controller.quorum.voters": self.voters} if self.voters else
               {"controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}"}),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            **self.settings,
        }

    def _format_args(self) -> list[str]:
        """Extra ``kafka-storage format`` arguments (``--add-scram``: users exist before the broker starts)."""
        return []

    def _write_config(self) -> Path:
        path = self.dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self._properties().items()))
        (self.dir / "log4j2.properties").write_text(LOG4J2.format(log=self.log_file))
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        if self.libs is None:
            self.libs = kafka_libs()
        java = java_binary()
        return [
            java, *JVM_OPTS, *self._cds_opts(java, main),
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}", f"-Dkafka.logs.dir={self.dir}",
            "-cp", f"{self.libs}/*", main, *args,
        ]

    def _cds_opts(self, java: str, main: str) -> list[str]:
        """Map this JVM's class archive for ``main`` if there is one, else ask the JVM to write it at exit."""
        assert self.libs is not None
        key = hashlib.sha256(f"{os.path.realpath(java)}|{main}".encode()).hexdigest()[:12]
        archive = self.libs / ".cds" / f"{main.rsplit('.', 1)[-1]}-{key}.jsa"
        if archive.exists():
            self._pending_archive = None
            return [f"-XX:SharedArchiveFile={archive}"]
        try:
            archive.parent.mkdir(exist_ok=True)
        except OSError:  # a read-only cache: run without
            return []
        partial = archive.with_name(f"{archive.name}.{uuid.uuid4().hex[:8]}.partial")
        self._pending_archive = (partial, archive)
        return [f"-XX:ArchiveClassesAtExit={partial}"]

    def _settle_archive(self, clean_exit: bool) -> None:
        """Keep an archive the JVM wrote at a clean exit (renamed into place atomically); drop any other."""
        pending, self._pending_archive = self._pending_archive, None
        if pending is None:
            return
        partial, archive = pending
        if clean_exit and partial.exists() and partial.stat().st_size > 0:
            os.replace(partial, archive)
        else:
            partial.unlink(missing_ok=True)

    def _format(self, config: Path) -> None:
        """Format the storage once (KRaft needs it): a single voter bootstrapped with ``--standalone``, or a
        member of the static quorum its config names."""
        standalone = [] if self.voters else ["--standalone"]
        out = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(config), *standalone,
                       *self._format_args()),
            capture_output=True, text=True, timeout=120,
        )
        self._settle_archive(out.returncode == 0)
        if out.returncode != 0:
            raise RuntimeError(f"kafka storage format failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        self._formatted = True

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout_s: float = 90.0) -> None:
        """Format on first start, launch the JVM, return once the broker answers a metadata request."""
        if self.proc is not None:
            raise RuntimeError("broker already running")
        started = time.monotonic()
        config = self._write_config()
        if not self._formatted:
            self._format(config)
        launched = time.monotonic()
        with (self.dir / "kafka.out").open("ab") as out:
            self.proc = subprocess.Popen(self._java("kafka.Kafka", str(config)), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            self._wait_ready(started + timeout_s)
        except BaseException:
            self.kill()
            raise
        self.last_start_s = time.monotonic() - launched

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful: SIGTERM (controlled shutdown, logs flushed and checkpointed), SIGKILL if it hangs."""
        proc = self.proc
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        self.proc = None
        self._settle_archive(proc.returncode in (0, 143, -signal.SIGTERM))

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM killer would: no shutdown hook runs, nothing is flushed by Kafka."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.proc = None
        self._settle_archive(False)

    def restart(self, *, hard: bool = True, timeout_s: float = 90.0) -> None:
        """Kill (``hard``) or stop the broker, then start it again on the same ports and data directory."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start(timeout_s)

    def cleanup(self) -> None:
        """Stop and, if this broker made its own directory, remove it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    async def astart(self, timeout_s: float = 90.0) -> None:
        await asyncio.to_thread(self.start, timeout_s)

    async def astop(self, timeout_s: float = 30.0) -> None:
        await asyncio.to_thread(self.stop, timeout_s)

    async def akill(self) -> None:
        await asyncio.to_thread(self.kill)

    async def arestart(self, *, hard: bool = True, timeout_s: float = 90.0) -> None:
        await asyncio.to_thread(self.restart, hard=hard, timeout_s=timeout_s)

    # --- readiness -----------------------------------------------------------------------------

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""
            out = self.dir / "kafka.out"
            tail += out.read_text(errors="replace")[-2000:] if out.exists() else ""
            raise RuntimeError(f"kafka exited with {self.proc.returncode}; see {self.dir}:\n{tail}")

    def _wait_ready(self, deadline: float) -> None:
        # The broker listener accepts connections only once the node is unfenced; then one metadata request
        # (through aiokafka, as the code under test talks to it) confirms it serves this broker.
        while True:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kafka did not listen on {self.bootstrap}; see {self.log_file}") from exc
                time.sleep(0.05)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a fresh event loop, whoever calls us
            pool.submit(asyncio.run, self._metadata_until(deadline)).result()

    async def _metadata_until(self, deadline: float) -> None:
        last: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
                if cluster.get("brokers"):
                    return
            except KafkaError as exc:
                last = exc
            finally:
                await admin.close()
            await asyncio.sleep(0.05)
        raise RuntimeError(f"kafka did not answer a metadata request in time ({last!r}); see {self.log_file}")


CLUSTER_SETTINGS = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
}
"""A production-shaped cluster: every record on three brokers, acknowledged (acks=all) once on two."""


class KafkaCluster:
    """Three Apache Kafka nodes, each broker and controller (a static KRaft quorum of three voters), on free
    ports, data under ``base_dir/node<id>``. Any one node may be killed: the other two keep a quorum and an
    in-sync replica set of ``min.insync.replicas``."""

    def __init__(self, base_dir: Path, size: int = 3) -> None:
        ports = free_ports(2 * size)
        voters = ",".join(f"{i + 1}@127.0.0.1:{ports[2 * i + 1]}" for i in range(size))
        cluster_id = new_cluster_id()
        self.nodes = {
            i + 1: KafkaBroker(base_dir / f"node{i + 1}", settings=CLUSTER_SETTINGS, node_id=i + 1,
                               cluster_id=cluster_id, ports=(ports[2 * i], ports[2 * i + 1]), voters=voters)
            for i in range(size)
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values())

    def start(self, timeout_s: float = 120.0) -> None:
        """Start every node at once: none is ready before a majority of the quorum runs."""
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            for done in [pool.submit(node.start, timeout_s) for node in self.nodes.values()]:
                done.result()

    def stop(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes.values()))

    async def partitions(self, topic: str) -> list[dict[str, Any]]:
        """The topic's partitions as the cluster's metadata has them (``partition``, ``leader``, ``isr``, …)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            (described,) = await admin.describe_topics([topic])
            return sorted(described["partitions"], key=lambda p: p["partition"])
        finally:
            await admin.close()


@dataclass(frozen=True)
class KafkaForTest:
    """A broker and this test's namespace on it: what a test hands to a KafkaBus, settings or a process."""

    broker: KafkaBroker
    namespace: str

    @property
    def url(self) -> str:
        return f"kafka://{self.broker.bootstrap}"

    def settings(self) -> dict[str, Any]:
        """Settings overrides (``load_settings(**kafka.settings())``): this bus, idempotence on as in production."""
        return {"bus": self.url, "kafka_namespace": self.namespace,
                **{f"kafka_{name}": value for name, value in FAST_GROUP.items()}}

    def env(self) -> dict[str, str]:
        """The same settings as ``SPENDGATE_*`` variables, for a service run as a process."""
        return {f"SPENDGATE_{name.upper()}": str(value) for name, value in self.settings().items()}

    def bus(self, **kw: Any) -> KafkaBus:
        return KafkaBus(self.broker.bootstrap, namespace=self.namespace, **{**FAST_GROUP, **kw})
