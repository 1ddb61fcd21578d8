"""Hostile load with real clients: pywbem and pywbemcli keep working while others flood the
server with idle sockets and wrong passwords, and a full server refuses over TLS on its
HTTPS port, never in plain text. (The floods' memory and thread bounds are asserted by
tests/tests/hostile_load.rs; scripts/bench-floods measures them.)"""

import base64
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pywbem

from conftest import ADMIN, READER, Server
from test_http_protocol import ENUM_CLASS_NAMES, headers_for, read_reply

PYWBEMCLI = Path(sys.executable).with_name("pywbemcli")

def request_bytes(creds, body=ENUM_CLASS_NAMES):
    """An EnumerateClassNames request with the credentials `creds`."""
    auth = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    headers = headers_for(body, Authorization=auth)
    return ("POST /cimom HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n" + body).encode()


def connect_from(source, port, timeout=60):
    """A connection to `port` on 127.0.0.1 from the loopback address `source`."""
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def status_of(s):
    """The status of the response read from `s`; None if it closed first."""
    reply = read_reply(s)
    return reply.status if reply else None


def test_pywbem_and_pywbemcli_are_served_beside_a_thousand_idle_sockets(server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held = []
    try:
        for port in (server.http_port, server.https_port):
            for i in range(550):
                held.append(connect_from(f"127.0.0.{10 + i // 100}", port))
        time.sleep(0.5)  # idle a moment: connections that just opened are not closed for room
        for scheme in ("http", "https"):
            assert "CIM_ManagedElement" in server.conn(scheme).EnumerateClassNames()
        out = subprocess.run(
            [str(PYWBEMCLI), "-s", server.url("https"), "-u", ADMIN[0], "-p", ADMIN[1],
             "--ca-certs", server.cert, "-d", "root/virt", "class", "enumerate", "--names-only"],
            capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr + out.stdout
        assert "CIM_ManagedElement" in out.stdout
    finally:
        for s in held:
            s.close()


def test_pywbem_logs_in_during_a_wrong_password_flood(tmp_path):
    srv = Server(tmp_path / "data")
    try:
        answers, lock = [], threading.Lock()

        def guess(i):
            try:
                with connect_from("127.0.0.2", srv.http_port) as s:
                    s.sendall(request_bytes(("admin", f"guess-number-{i}")))
                    status = status_of(s)
            except OSError as e:
                status = type(e).__name__
            with lock:
                answers.append(status)

        flood = [threading.Thread(target=guess, args=(i,)) for i in range(100)]
        for t in flood:
            t.start()
        time.sleep(0.5)
        # Credentials the server has not seen yet: they must be checked during the flood.
        assert srv.conn(creds=READER).EnumerateClassNames()
        for t in flood:
            t.join()
        assert set(answers) <= {401, 503}, answers
        # The attacker's address is slowed down; others are not.
        assert srv.conn("https").EnumerateClassNames()
    finally:
        code, log = srv.stop()
    assert code == 0, log
    assert "panicked" not in log


def test_a_full_server_refuses_over_tls_on_its_https_port(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    config = data / "cimvirtd.toml"
    config.write_text("[limits]\nmax_connections = 2\nbody_read_timeout_secs = 30\n")
    srv = Server(data, extra_args=["--config", str(config)])
    ctx = ssl.create_default_context(cafile=srv.cert)
    try:
        # Two requests in progress (their bodies still coming) take both slots.
        busy = []
        request = request_bytes(ADMIN)
        for _ in range(2):
            s = ctx.wrap_socket(connect_from("127.0.0.1", srv.https_port), server_hostname="127.0.0.1")
            s.sendall(request[:-10])
            busy.append(s)
        time.sleep(0.5)
        # A TLS client gets a 503 inside TLS.
        with ctx.wrap_socket(connect_from("127.0.0.1", srv.https_port),
                             server_hostname="127.0.0.1") as s:
            assert status_of(s) == 503
        # A client that speaks no TLS gets no plain-text answer on the HTTPS port.
        with connect_from("127.0.0.1", srv.https_port, timeout=30) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            try:
                first = raw.recv(5)
            except ConnectionResetError:
                pass
            assert not first.startswith(b"HTTP"), first
        # The busy requests complete.
        for s in busy:
            s.sendall(request[-10:])
            assert status_of(s) == 200
            s.close()
        assert srv.conn("https").EnumerateClassNames()
    finally:
        code, log = srv.stop()
    assert code == 0, log
