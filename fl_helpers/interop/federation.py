r"""Flower's deployment runtime on one machine: a SuperLink and SuperNodes as separate processes.

What a real federation runs, started here on ``127.0.0.1`` with free ports:

``flower-superlink``
    the server's long-running process: nodes connect to it (Fleet API), ``flwr run`` submits runs to
    it (Control API), and it starts the ``ServerApp`` of each run in a subprocess (``flwr-serverapp``).
``flower-supernode``
    one per party: connects to the SuperLink, receives messages, and runs the ``ClientApp`` on its own
    data (``--node-config`` tells it which data).
``flwr run APP CONNECTION``
    builds the app directory into a Flower App Bundle (FAB), submits it, streams its log until the
    run ends. ``CONNECTION`` is a named SuperLink connection in ``$FLWR_HOME/config.toml``.

:class:`LocalFederation` owns all of these: it picks free ports, writes the connection file in a
private ``FLWR_HOME``, keeps every process's log in ``workdir/logs``, bounds every wait, and stops
every process it started (their whole process groups) when the ``with`` block ends, also on errors.
On failure the logs stay on disk and the error says where.

Security (the classroom): :func:`make_certificates` writes a CA and a server certificate for TLS;
:func:`make_node_key` writes a node's key pair for SuperNode authentication. With ``tls`` the
nodes verify the SuperLink's certificate; with ``auth=True`` the SuperLink refuses any node whose
public key was not registered (``flwr supernode register``) before it connects.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import validation as valid

CONNECTION = "course"
APP_MODULE = "course_flower_app"


_GIVEN: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nobody listens on now (the OS picks it), never the same one twice per process.

    The OS may hand a port it just freed out again; processes that have not started listening yet
    would then collide, so each port is given once.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def reachable(address: str, timeout: float = 3.0) -> bool:
    """True if something accepts TCP connections at ``host:port``."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def split_address(address) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``, with a message naming the parameter on bad input."""
    if not isinstance(address, str):
        raise TypeError(f"address must be a str 'host:port', got {type(address).__name__}")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address must be 'host:port' with a port 1..65535 (e.g. 192.168.1.20:9092), "
                         f"got {address!r}")
    return host.strip("[]"), int(port)


def _bin(name: str) -> str:
    """A Flower command of the running Python's environment (its bin directory goes first on PATH)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH: "
                                    "pip install 'flwr[simulation]>=1.42,<2'")
        return found
    return str(path)


def _env(flwr_home: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"   # flower-superexec ...
    env["FLWR_HOME"] = str(flwr_home)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # the SuperExec (which starts the ServerApp / ClientApp processes) checks for work every second by
    # default; Flower lets us make that 50 ms (the SuperNode's own 3 s poll is fixed)
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.05")
    env.pop("COLUMNS", None)
    env["NO_COLOR"] = "1"                 # plain logs
    env["TERM"] = "dumb"
    return env


def toml_value(value) -> str:
    """A run-config or node-config value as Flower's ``key=value`` parser reads it (TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))            # a JSON string is a TOML basic string (quotes, backslashes escaped)


def config_arg(config: dict) -> str:
    """``{"a": 1, "b": "x"}`` -> ``'a=1 b="x"'`` (Flower's --node-config / --run-config syntax)."""
    return " ".join(f"{key}={toml_value(value)}" for key, value in config.items())


def write_app(directory, *, config: dict | None = None) -> Path:
    """The Flower app directory (``pyproject.toml`` + one module) that ``flwr run`` bundles.

    The module only imports the course's apps (:func:`fl_helpers.interop.flower.deployment_apps`):
    the nodes and the server run code installed with ``fl_helpers``, so the bundle needs no
    dependencies installed at run time (the SuperLink runs with
    ``--disable-runtime-dependency-installation``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"spec": ""} | dict(config or {})
    lines = "\n".join(f"{key} = {toml_value(value)}" for key, value in config.items())
    (directory / "pyproject.toml").write_text(f"""\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fl-course-federation"
version = "1.0.0"
description = "The federated-learning course's parties, server and round on Flower"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "fl-course"

[tool.flwr.app.components]
serverapp = "{APP_MODULE}:server"
clientapp = "{APP_MODULE}:client"

[tool.flwr.app.config]
{lines}
""", encoding="utf-8")
    (directory / f"{APP_MODULE}.py").write_text(
        '"""The course\'s Flower apps (see fl_helpers.interop.flower.deployment_apps)."""\n'
        "from fl_helpers.interop.flower import deployment_apps\n\n"
        "apps = deployment_apps()\nserver = apps[0]\nclient = apps[1]\n", encoding="utf-8")
    return directory


# --------------------------------------------------------------------------- keys and certificates

@dataclass(frozen=True)
class Certificates:
    """Paths of a CA certificate and the server's certificate and key (PEM)."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(directory, *, hosts=("127.0.0.1", "localhost"), days: int = 30) -> Certificates:
    """A private CA and a server certificate for ``hosts`` (IP addresses or names), for TLS.

    The SuperLink gets ``--ssl-ca-certfile ca.pem --ssl-certfile server.pem --ssl-keyfile server.key``;
    every node and ``flwr run`` get ``ca.pem`` (``--root-certificates``) and so can check that they
    talk to this SuperLink. Give the address students will type (the laptop's LAN IP) in ``hosts``.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    days = valid.integer("days", days, minimum=1)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fl-course classroom CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP384R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(hosts[0]))]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    out = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    out.key.chmod(0o600)
    return out


def make_node_key(directory, name: str) -> tuple[Path, Path]:
    """A SuperNode's key pair for authentication (ECDSA P-384, OpenSSH format): ``(private, public)``.

    The node starts with ``--auth-supernode-private-key <private>``; the instructor registers the
    public key (``flwr supernode register <public> <connection>``) before the node connects.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public


# --------------------------------------------------------------------------- the processes

class FederationError(RuntimeError):
    """A process of the federation failed or a wait ran out; the message says which and where its log is."""


class LocalFederation:
    """A SuperLink and SuperNodes as separate local processes, stopped when the ``with`` block ends.

    Parameters
    ----------
    workdir : path, optional
        Where the logs, ``FLWR_HOME`` and the app live; a new temporary directory by default, removed
        at the end unless something failed (then it is kept and the error names it) or ``keep=True``.
    host : str
        The address the SuperLink listens on: ``127.0.0.1`` (this machine only) or ``0.0.0.0``
        (a classroom: every laptop on the network).
    port : int, optional
        The SuperLink's port (Fleet, Control and ServerApp APIs share it); a free one by default.
    tls : Certificates, optional
        Serve TLS with these certificates (nodes and ``flwr run`` then check them); plaintext
        (``--insecure``) by default, which is fine on 127.0.0.1 only.
    auth : bool
        Refuse nodes whose public key was not registered with :meth:`register`.
    start_timeout : float
        Seconds to wait for the SuperLink to accept connections.
    """

    def __init__(self, workdir=None, *, host: str = "127.0.0.1", port: int | None = None,
                 tls: Certificates | None = None, auth: bool = False, keep: bool = False,
                 start_timeout: float = 60.0):
        self._tmp = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="flower-")) if workdir is None else Path(workdir)
        self.host = host
        self.port = free_port() if port is None else valid.integer("port", port, minimum=1, maximum=65535)
        self.tls, self.auth, self.keep = tls, bool(auth), bool(keep)
        self.start_timeout = valid.positive_float("start_timeout", start_timeout)
        self.logs = self.workdir / "logs"
        self.home = self.workdir / "flwr-home"
        self.processes: dict[str, subprocess.Popen] = {}
        self.failed = False

    # ---- life cycle
    def __enter__(self) -> LocalFederation:
        atexit.register(self.stop)          # also when Python exits with this block still open (a thread)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_connection()
        try:
            self.start_superlink()
        except BaseException:
            self.failed = True
            self.stop()
            raise
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            self.failed = True
        self.stop()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: where this machine's nodes and ``flwr run`` connect."""
        return f"127.0.0.1:{self.port}"

    def _write_connection(self) -> None:
        lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]",
                 f'address = "{self.address}"']
        lines += [f'root-certificates = "{self.tls.ca}"'] if self.tls else ["insecure = true"]
        (self.home / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        if name in self.processes and self.processes[name].poll() is None:
            raise ValueError(f"a process named {name!r} is already running")
        log = open(self.logs / f"{name}.log", "wb")                                  # noqa: SIM115
        with log:
            log.write(("$ " + shlex.join(argv) + "\n").encode())
            log.flush()
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=_env(self.home), cwd=self.workdir, start_new_session=True)
        self.processes[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def fail(self, message: str, name: str | None = None) -> FederationError:
        """A FederationError that names the log kept on disk (and shows its last lines)."""
        self.failed = True
        tail = f"\nlast lines of {self.logs / (name + '.log')}:\n{self.log_tail(name)}" if name else ""
        return FederationError(f"{message} (logs kept in {self.logs}){tail}")

    def start_superlink(self) -> None:
        argv = [_bin("flower-superlink"), "--host", self.host, "--port", str(self.port),
                "--disable-runtime-dependency-installation"]
        if self.tls:
            argv += ["--ssl-ca-certfile", str(self.tls.ca), "--ssl-certfile", str(self.tls.cert),
                     "--ssl-keyfile", str(self.tls.key)]
        else:
            argv += ["--insecure"]
        if self.auth:
            argv += ["--enable-supernode-auth"]
        proc = self._spawn("superlink", argv)
        deadline = time.monotonic() + self.start_timeout
        # up = its log says so and the port answers (a port that answers alone may be someone else's)
        while "Uvicorn running on" not in self.log_tail("superlink", 200) or not reachable(self.address, 0.5):
            if proc.poll() is not None:
                raise self.fail(f"flower-superlink exited with code {proc.returncode} at start-up", "superlink")
            if time.monotonic() > deadline:
                raise self.fail(f"flower-superlink did not listen on {self.address} within "
                                f"{self.start_timeout:g} s", "superlink")
            time.sleep(0.1)

    def add_node(self, name: str, node_config: dict, *, private_key=None, superlink: str | None = None,
                 max_wait: float | None = None) -> subprocess.Popen:
        """Start a SuperNode called ``name`` with ``node_config`` (e.g. ``{"partition-id": 0}``)."""
        argv = [_bin("flower-supernode"), "--superlink", superlink or self.address,
                "--node-config", config_arg(node_config), "--port", str(free_port())]
        argv += ["--root-certificates", str(self.tls.ca)] if self.tls else ["--insecure"]
        if private_key is not None:
            argv += ["--auth-supernode-private-key", str(private_key)]
        if max_wait is not None:
            argv += ["--max-wait-time", str(float(max_wait))]
        return self._spawn(name, argv)

    def flwr(self, *args: str, timeout: float = 120.0, name: str = "flwr") -> subprocess.CompletedProcess:
        """Run a ``flwr`` CLI command against this SuperLink (output kept in ``logs/<name>.log``)."""
        argv = [_bin("flwr"), *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=_env(self.home), cwd=self.workdir,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            (self.logs / f"{name}.log").write_text(f"$ {shlex.join(argv)}\n{exc.stdout or ''}{exc.stderr or ''}")
            raise self.fail(f"`flwr {args[0]}` did not finish within {timeout:g} s", name) from None
        (self.logs / f"{name}.log").write_text(f"$ {shlex.join(argv)}\n{done.stdout}{done.stderr}",
                                               encoding="utf-8")
        return done

    def register(self, public_key) -> None:
        """Register a node's public key with the SuperLink (needed when ``auth=True``)."""
        done = self.flwr("supernode", "register", str(public_key), CONNECTION, name="register")
        if done.returncode != 0:
            raise self.fail(f"registering {public_key} failed (exit {done.returncode})", "register")

    def submit(self, app_dir, run_config: dict, *, timeout: float = 300.0, watch: tuple[str, ...] = ()) -> None:
        """``flwr run app_dir course --run-config ... --stream``: submit a run and wait for its end.

        ``watch`` names processes (nodes) that must stay up meanwhile: if one exits, the run is stopped
        and the error shows that process's log.
        """
        proc = self._spawn("run", [_bin("flwr"), "run", str(app_dir), CONNECTION, "--run-config",
                                   config_arg(run_config), "--stream"])
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            for name in watch:
                if self.processes[name].poll() is not None:
                    self.stop_process("run")
                    raise self.fail(f"{name} exited with code {self.processes[name].returncode} during the run",
                                    name)
            if self.processes["superlink"].poll() is not None:
                self.stop_process("run")
                raise self.fail("flower-superlink exited during the run", "superlink")
            if time.monotonic() > deadline:
                self.stop_process("run")
                raise self.fail(f"the run did not finish within {timeout:g} s", "run")
            time.sleep(0.1)
        if proc.returncode != 0:
            raise self.fail(f"`flwr run` failed with exit code {proc.returncode}", "run")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every process started here (SIGTERM to its group, SIGKILL after ``timeout`` s)."""
        atexit.unregister(self.stop)
        for proc in self.processes.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # the groups may hold children (flwr-serverapp, flwr-clientapp) whose parent already left
        for proc in self.processes.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._tmp and not self.failed and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_process(self, name: str) -> None:
        """Stop one process (a node leaving, the SuperLink going down) and its children."""
        stop_group(self.processes[name])


def stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM to the process group of ``proc`` (started with ``start_new_session``), SIGKILL after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
