"""A real OpenSSH server on 127.0.0.1 for backend tests, in a temp dir of its own.

``Sshd`` makes a host key, a client key, an ``authorized_keys`` holding it, a ``known_hosts``
line for the server and an ``sshd_config``, all in one temp dir, then runs ``/usr/sbin/sshd -D``
on a free loopback port as this user. ``kill()`` ends the listener *and* every session process
it forked (what a host going away looks like to a client: the TCP connections die and new ones
are refused); ``start()`` again serves the same port with the same host key, so a client that
verified the key before reconnects. ``stop()`` also removes the temp dir; only processes this
object started (and their descendants) are ever signalled.

Needs ``openssh-server`` (``.ci/install-services.sh``); facts on starting it:
``../shared/reference/services_on_this_machine.md``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"


def available() -> str | None:
    """Why an sshd cannot be started here (None: it can)."""
    if not Path(SSHD).is_file():
        return f"{SSHD} not installed (.ci/install-services.sh installs openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen not installed"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from /proc (no ps needed)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Sshd:
    """One test sshd: ``host``, ``port``, ``user``, ``key`` (client private key), ``known_hosts``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="layerlab-sshd-"))
        try:
            self._prepare()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _prepare(self) -> None:
        self.host = HOST
        self.port = _free_port()
        self.user = _user()
        self.key = self.dir / "client_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.proc: subprocess.Popen | None = None
        host_key = self.dir / "host_ed25519"
        for path in (host_key, self.key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "layerlab-test", "-f", str(path)],
                check=True, capture_output=True,
            )  # fmt: skip
        (self.dir / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        host_pub = " ".join(Path(f"{host_key}.pub").read_text().split()[:2])
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {host_pub}\n")
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    "StrictModes no",  # the temp dir lives under /tmp (mode 1777)
                    "UsePAM no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "Subsystem sftp internal-sftp",
                    "MaxStartups 50",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        # sshd refuses to start without its privilege separation directory (a package's init
        # script would make it); it is a fixed system path, so it is made, never removed.
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    # -- life cycle
    def start(self, timeout: float = 10.0) -> None:
        log = (self.dir / "sshd.log").open("ab")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-p", str(self.port), "-o", f"ListenAddress={self.host}",
             "-h", str(self.dir / "host_ed25519"), "-f", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited ({self.proc.returncode}): {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd not ready on {self.host}:{self.port} after {timeout} s: {self.log()}")

    def kill(self) -> None:
        """The host goes away: the listener and all its session processes die at once."""
        if self.proc is None:
            return
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "sshd.log").read_text(errors="replace")[-2000:]
        return ""

    def settings(self, remote_root: Path, **extra) -> dict:
        """``backend.settings`` of an ssh backend that logs in to this server."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key": str(self.key),
            "known_hosts": str(self.known_hosts),
            "remote_root": str(remote_root),
            **extra,
        }


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
