"""A real IMAP server on 127.0.0.1: Debian's Dovecot, with its own configuration, mail and
state in a temporary folder, started for a test and stopped after it.

Plain IMAP with plaintext login (loopback only), one passwd-file user, mail as Maildir. Dovecot
will not run its login processes or hold mail as root: under root the mail belongs to the
`dovecot` user and the logins run as `dovenull`, so the folder must be one they can reach (made
with mkdtemp under /tmp and opened up, not pytest's private tmp_path).
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import IN_CI
from smtp_fixtures import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "imap-test-password"
START_WITHIN = 15.0


@dataclass(frozen=True)
class Dovecot:
    host: str
    port: int
    user: str
    password: str
    root: Path

    def connect(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.host, self.port, timeout=5)
        conn.login(self.user, self.password)
        return conn

    @property
    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


def need_dovecot() -> None:
    """Skip with the reason where Dovecot is missing; in CI, where the IMAP tests must run,
    fail instead."""
    if not Path(DOVECOT).is_file():
        reason = "the IMAP tests need Dovecot (apt-get install dovecot-imapd)"
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the IMAP tests")
        pytest.skip(reason)


def _config(root: Path, port: int, capability: str | None) -> str:
    if os.geteuid() == 0:
        mail_user, login_user, internal_user = "dovecot", "dovenull", "dovecot"
    else:
        mail_user = login_user = internal_user = pwd.getpwuid(os.getuid()).pw_name
    owner = pwd.getpwnam(mail_user)
    internal = pwd.getpwnam(internal_user)
    lines = [
        "protocols = imap",
        "listen = 127.0.0.1",
        f"base_dir = {root / 'run'}",
        f"state_dir = {root / 'state'}",
        "instance_name = feeds-test",
        f"log_path = {root / 'dovecot.log'}",
        "ssl = no",
        "disable_plaintext_auth = no",
        "auth_mechanisms = plain login",
        f"default_login_user = {login_user}",
        f"default_internal_user = {internal_user}",
        f"default_internal_group = {grp.getgrgid(internal.pw_gid).gr_name}",
        f"first_valid_uid = {owner.pw_uid}",
        f"last_valid_uid = {owner.pw_uid}",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN {root / 'users'}",
        "}",
        "userdb {",
        "  driver = static",
        f"  args = uid={owner.pw_uid} gid={owner.pw_gid} home={root / 'mail'}/%u",
        "}",
        f"mail_location = maildir:{root / 'mail'}/%u/Maildir",
        "service imap-login {",
        "  chroot =",
        "  inet_listener imap {",
        "    address = 127.0.0.1",
        f"    port = {port}",
        "  }",
        "  inet_listener imaps {",
        "    port = 0",
        "  }",
        "}",
        "service anvil {",
        "  chroot =",
        "}",
    ]
    if capability is not None:
        # What the server says it can do, to test a client's fallbacks (no MOVE, say).
        lines.append(f"imap_capability = {capability}")
    return "\n".join(lines) + "\n"


@contextmanager
def running_dovecot(*, capability: str | None = None) -> Iterator[Dovecot]:
    """Dovecot on a free port of 127.0.0.1 until the block ends."""
    need_dovecot()
    root = Path(tempfile.mkdtemp(prefix="feeds-dovecot-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        os.chmod(root, 0o755)
        (root / "mail").mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("dovecot")
            os.chown(root / "mail", owner.pw_uid, owner.pw_gid)
        (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
        port = free_port()
        config = root / "dovecot.conf"
        config.write_text(_config(root, port, capability), encoding="utf-8")
        process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(root / "stderr.log").open("wb"),
        )
        server = Dovecot("127.0.0.1", port, USER, PASSWORD, root)
        _wait_until_answering(server, process)
        yield server
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_answering(server: Dovecot, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = (server.root / "stderr.log").read_text(errors="replace")
            raise RuntimeError(f"dovecot exited with {process.returncode}: {stderr}{server.log}")
        try:
            with socket.create_connection((server.host, server.port), timeout=1) as sock:
                sock.settimeout(2)
                if sock.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"dovecot did not answer on {server.port} within {START_WITHIN}s")


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server
