"""Fixtures: a real cimvirtd on free loopback ports in a temporary data directory.

The binary is the release build (`cargo build --release`); CIMVIRTD overrides its path.
"""

import atexit
import base64
import hashlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import pywbem

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("CIMVIRTD", REPO / "target" / "release" / "cimvirtd"))

sys.path.insert(0, str(REPO / "scripts"))
from cimvirtd_ports import wait_for_ports  # noqa: E402

# OpenPegasus's and openwsman's clients, installed by scripts/setup-test-env.
CLIENTS = Path(os.environ.get("CIMVIRT_CLIENTS", REPO / "target" / "clients"))
OPENPEGASUS_BIN = CLIENTS / "openpegasus-2.14.4" / "bin"
WSMAN_BIN = CLIENTS / "wsmancli-2.8.1" / "bin"

ADMIN = ("admin", "admin-pass-1")
READER = ("reader", "reader-pass-2")
# Read-write in root/virt only: not an administrator (Server(..., operator=True) adds it).
OPERATOR = ("operator", "operator-password")

# requests lets these variables override an explicit CA bundle; the tests verify the
# server's own certificate, so they must not be inherited.
for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)


def client_program(path):
    """A client program from ../shared/clients: its path, or the module is skipped with
    NOT RUN where it is not installed (an error on CI, where setup-test-env installs it)."""
    if not os.access(path, os.X_OK):
        if os.environ.get("CI"):
            raise RuntimeError(f"{path} is missing: scripts/setup-test-env installs it")
        pytest.skip(f"NOT RUN: {path} is not installed (scripts/setup-test-env)",
                    allow_module_level=True)
    return str(path)


def free_port():
    """A free port on 127.0.0.1, free when asked: only for a peer that cannot bind port 0 and
    say which it got, since another process may take it in between."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cimvirtd(*args, stdin=None, check=True):
    """Runs a cimvirtd subcommand to completion."""
    return subprocess.run([str(BINARY), *args], input=stdin, capture_output=True,
                          text=True, check=check, timeout=60)


RUN_DIRS = set()


@atexit.register
def _remove_run_dirs():
    for d in RUN_DIRS:
        shutil.rmtree(d, ignore_errors=True)


def run_dir_for(data_dir):
    """A short run directory for the VM sockets of the server on `data_dir` (the same for
    each start on it): pytest's temporary directories are too deep for a Unix socket path
    of RUN_DIR/UUID.sock (107 bytes), where /var/lib/cimvirt/run is not."""
    digest = hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]
    d = Path(tempfile.gettempdir()) / f"cvrun-{digest}"
    RUN_DIRS.add(d)
    return d


class Server:
    """A running cimvirtd."""

    def __init__(self, data_dir, extra_args=(), users=True, prefix=(), operator=False):
        """`prefix` runs the server under another command (`ip netns exec NS`); `operator`
        adds the user OPERATOR, with read-write rights in root/virt alone."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if users:
            for name, password, access in (ADMIN + ("read-write",), READER + ("read-only",)):
                cimvirtd("user", "add", name, "--access", access, "--data-dir", str(self.data_dir),
                         stdin=password + "\n")
        if operator:
            cimvirtd("user", "add", OPERATOR[0], "--access", "read-write", "--namespace", "root/virt",
                     "--data-dir", str(self.data_dir), stdin=OPERATOR[1] + "\n")
        self.log_path = self.data_dir / "server.log"
        self.log = open(self.log_path, "w")
        self.run_dir = run_dir_for(self.data_dir)
        self.proc = subprocess.Popen(
            [*prefix, str(BINARY), "serve", "--data-dir", str(self.data_dir),
             "--run-dir", str(self.run_dir),
             # Port 0: the server binds whichever port is free and logs it, so no other
             # process can take the port between its choice and the bind.
             "--http", "127.0.0.1:0", "--https", "127.0.0.1:0",
             *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.http_port, self.https_port = wait_for_ports(self.proc, self.log_path, timeout=30)
        self.cert = str(self.data_dir / "tls" / "cert.pem")

    def url(self, scheme="http"):
        port = self.http_port if scheme == "http" else self.https_port
        return f"{scheme}://127.0.0.1:{port}"

    def conn(self, scheme="http", creds=ADMIN, namespace="root/virt", **kw):
        return pywbem.WBEMConnection(self.url(scheme), creds, default_namespace=namespace,
                                     ca_certs=self.cert if scheme == "https" else None,
                                     timeout=60, **kw)

    def stop(self):
        """SIGTERM, then the exit status and the log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode, self.log_path.read_text()


class HttpSink:
    """An HTTP listener for indications and WS-Management events. It records each POST as
    (path, Content-Type, body text) in `received`, with its Authorization header in
    `authorizations`; given `credentials` (user, password), it answers 401 to a request
    without them as HTTP Basic and counts it in `refused`. With `ack`, it answers each
    event with a wsman:Ack, as a PushWithAck sink must. `port` 0 picks a free one."""

    ACK = ('<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
           'xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"><s:Header>'
           '<wsa:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/Ack</wsa:Action>'
           '</s:Header><s:Body/></s:Envelope>').encode()

    def __init__(self, credentials=None, ack=False, port=0):
        self.received = []
        self.authorizations = []
        self.refused = 0
        expected = (f"Basic {base64.b64encode(':'.join(credentials).encode()).decode()}"
                    if credentials else None)
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                authorization = self.headers.get("Authorization")
                if expected and authorization != expected:
                    sink.refused += 1
                    self.send_response(401)
                else:
                    sink.authorizations.append(authorization)
                    sink.received.append((self.path, self.headers.get("Content-Type"), body.decode()))
                    self.send_response(200)
                answer = HttpSink.ACK if ack else b""
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/eventsink"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, predicate, timeout=20):
        """The bodies received that satisfy `predicate`, once there is one."""
        deadline = time.monotonic() + timeout
        while not (found := [r[2] for r in self.received if predicate(r[2])]):
            assert time.monotonic() < deadline, [r[2][:300] for r in self.received]
            time.sleep(0.05)
        return found

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("cimvirtd"))
    yield srv
    code, log = srv.stop()
    assert code == 0, log
    assert "stopped" in log
    assert "panicked" not in log, log
    assert "the database is still referenced" not in log, "the database was closed cleanly"


@pytest.fixture(params=["http", "https"])
def conn(request, server):
    """An admin connection over HTTP and over HTTPS (tests using it run twice)."""
    return server.conn(request.param)


@pytest.fixture
def http_conn(server):
    return server.conn("http")


TEST_MOF = """
[Description ("A person, for the cimvirt tests.")]
class Test_Person {
    [Key, Description ("The name.")] string Name;
    uint32 Age;
    string Tags[];
    datetime Born;
};

class Test_Employee : Test_Person {
    string Company;
};

[Association, Description ("Who knows whom.")]
class Test_Knows {
    [Key] Test_Person REF Knower;
    [Key] Test_Person REF Known;
    uint16 Since;
};

instance of Test_Person as $alice { Name = "alice"; Age = 30; Tags = {"a", "b"};
    Born = "19950101000000.000000+000"; };
instance of Test_Employee as $bob { Name = "bob"; Age = 40; Company = "acme"; };
instance of Test_Person as $carol { Name = "carol"; Age = 25; };
instance of Test_Knows { Knower = $alice; Known = $bob; Since = 2020; };
instance of Test_Knows { Knower = $alice; Known = $carol; Since = 2021; };
instance of Test_Knows { Knower = $bob; Known = $carol; Since = 2022; };
"""


@pytest.fixture(scope="session")
def model(server):
    """Test classes and instances, created through pywbem's MOF compiler over CIM-XML."""
    conn = server.conn("http")
    pywbem.MOFCompiler(conn).compile_string(TEST_MOF, "root/virt")
    return conn
