"""Hostile load against cimvirtd: what each flood makes the server spend, and whether valid
clients are still served. Prints one Markdown table, with a column per binary measured in
the same run (`--before OLD` adds the server of an earlier build as the peer).

The floods (each against a fresh server on loopback ports):
- wrong passwords: 300 requests with distinct wrong passwords over 150 connections from
  127.0.0.2, and, 1 s in, one request from 127.0.0.1 with valid credentials never used
  before (so they must be checked, not remembered);
- valid-credential stampede: cimload, 64 keep-alive connections with the same valid
  credentials for 10 s, with remembered credentials expiring every 4 s, and the same with
  credentials that do not expire in the run, for comparison; 3 runs each, medians;
- idle sockets: 1,100 idle TCP connections from 127.0.0.2 to 127.0.0.12, then one valid
  request from 127.0.0.1 on a new connection;
- anonymous bodies: 60 requests of 15 MiB to /wsman-anon/identify, 20 at a time;
- half-closed requests: 50 valid requests, each followed by shutdown(SHUT_WR);
- 401 then retry: 20 times a 100 KiB request without credentials, then the same with
  them on the same connection (as wbemexec does).

RSS and thread counts are read from /proc/PID/status every 20 ms: before the flood (after
start-up), the peak during it, and 3 s after it ended.
"""

import argparse
import base64
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cimvirtd_ports import wait_for_ports

REPO = Path(__file__).resolve().parents[1]
ADMIN = ("admin", "bench-admin-password")
OPERATOR = ("operator", "bench-operator-password")

ENUM_CLASS_NAMES = (
    '<?xml version="1.0" encoding="utf-8" ?>'
    '<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0">'
    '<SIMPLEREQ><IMETHODCALL NAME="EnumerateClassNames"><LOCALNAMESPACEPATH>'
    '<NAMESPACE NAME="root"/><NAMESPACE NAME="virt"/></LOCALNAMESPACEPATH>'
    '</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')

IDENTIFY = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:wsmid="http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd">'
    '<s:Header/><s:Body><wsmid:Identify/></s:Body></s:Envelope>')


def basic(creds):
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def cimxml_request(body, creds=None, extra_headers=()):
    head = [
        "POST /cimom HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/xml; charset=utf-8",
        f"Content-Length: {len(body)}", "CIMOperation: MethodCall",
        "CIMMethod: EnumerateClassNames", "CIMObject: root%2Fvirt", *extra_headers,
    ]
    if creds:
        head.append(f"Authorization: {basic(creds)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body.encode()


def connect(port, source="127.0.0.1", timeout=60):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_response(s):
    """(status, headers, body) of one response with a Content-Length or chunked body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, headers, rest[:n]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return status, headers, rest


class Sampler(threading.Thread):
    """Reads VmRSS and Threads of a process every 20 ms and keeps the peaks."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.stop, self.peak_rss, self.peak_threads = pid, threading.Event(), 0.0, 0

    def run(self):
        while not self.stop.is_set():
            rss, threads = proc_status(self.pid)
            self.peak_rss, self.peak_threads = max(self.peak_rss, rss), max(self.peak_threads, threads)
            time.sleep(0.02)

    def finish(self):
        self.stop.set()
        self.join()


def proc_status(pid):
    """(RSS in MiB, threads) of a process."""
    rss, threads = 0.0, 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    except FileNotFoundError:
        pass
    return rss, threads


class Server:
    """A cimvirtd of `binary` in a fresh data directory, with `config` as its TOML file."""

    def __init__(self, binary, config=""):
        self.dir = tempfile.TemporaryDirectory(prefix="bench-floods-")
        data = Path(self.dir.name)
        for (name, password), access in ((ADMIN, "read-write"), (OPERATOR, "read-only")):
            subprocess.run([binary, "user", "add", name, "--access", access, "--data-dir", str(data)],
                           input=f"{password}\n", text=True, check=True, capture_output=True)
        (data / "cimvirtd.toml").write_text(config)
        self.log = open(data / "server.log", "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", str(data), "--config", str(data / "cimvirtd.toml"),
             "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.http_port, self.https_port = wait_for_ports(self.proc, data / "server.log", timeout=30)
        self.cert = str(data / "tls" / "cert.pem")
        time.sleep(1)  # let start-up settle before the baseline is read

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.dir.cleanup()


def timed_valid_request(port, source="127.0.0.1", creds=OPERATOR):
    """(status or error text, seconds) of one valid request on a new connection."""
    started = time.monotonic()
    try:
        with connect(port, source) as s:
            s.sendall(cimxml_request(ENUM_CLASS_NAMES, creds))
            status = read_response(s)[0]
    except OSError as e:
        status = type(e).__name__
    return status, time.monotonic() - started


class Measure:
    """Baseline, peak and after-figures of a server around a flood."""

    def __init__(self, pid):
        self.pid = pid
        self.base = proc_status(pid)
        self.sampler = Sampler(pid)
        self.sampler.start()

    def done(self):
        self.sampler.finish()
        time.sleep(3)
        after = proc_status(self.pid)
        return {
            "RSS MiB, before / peak / 3 s after": f"{self.base[0]:.1f} / {self.sampler.peak_rss:.1f} / {after[0]:.1f}",
            "threads, before / peak / 3 s after": f"{self.base[1]} / {self.sampler.peak_threads} / {after[1]}",
        }


def count(answers):
    tally = {}
    for a in answers:
        tally[a] = tally.get(a, 0) + 1
    return ", ".join(f"{n}x {k}" for k, n in sorted(tally.items(), key=lambda kv: str(kv[0])))


def wrong_passwords(binary):
    srv = Server(binary)
    try:
        m = Measure(srv.pid)
        answers, lock = [], threading.Lock()

        def attacker(i):
            s = None
            for j in range(2):
                try:
                    if s is None:
                        s = connect(srv.http_port, "127.0.0.2", timeout=120)
                    s.sendall(cimxml_request(ENUM_CLASS_NAMES, ("admin", f"guess-{i}-{j}")))
                    status, headers, _ = read_response(s)
                    if headers.get("connection", "").lower() == "close":
                        s.close()
                        s = None
                except OSError as e:
                    status = type(e).__name__
                    s = None
                with lock:
                    answers.append(status)
            if s:
                s.close()

        started = time.monotonic()
        threads = [threading.Thread(target=attacker, args=(i,)) for i in range(150)]
        for t in threads:
            t.start()
        time.sleep(1)
        valid = timed_valid_request(srv.http_port)
        for t in threads:
            t.join()
        flood_s = time.monotonic() - started
        row = m.done()
        row["valid request from another client during the flood"] = f"{valid[0]} in {valid[1] * 1000:.0f} ms"
        row["the flood's answers"] = count(answers)
        row["the flood's duration"] = f"{flood_s:.1f} s"
        return row
    finally:
        srv.stop()


def stampede(binary, cimload, runs=3):
    """64 connections for 10 s with remembered credentials expiring every 4 s (2 expiries),
    and the same with credentials that do not expire in the run (what the expiries cost);
    each `runs` times, the medians reported (these figures vary from run to run here)."""
    row = {}
    for cache_secs, label in ((4, "2 expiries"), (3600, "no expiry")):
        rates, p50s, p99s = [], [], []
        for n in range(runs):
            srv = Server(binary, f"[limits]\nauth_cache_secs = {cache_secs}\n")
            try:
                m = Measure(srv.pid)
                out = subprocess.run(
                    [cimload, "run", "--url", f"http://127.0.0.1:{srv.http_port}", "--user",
                     ADMIN[0], "--password", ADMIN[1], "--op", "enumerate-class-names",
                     "--concurrency", "64", "--duration", "10", "--warmup", "0.5"],
                    capture_output=True, text=True, timeout=120)
                figures = m.done()
            finally:
                srv.stop()
            if out.returncode != 0:
                row[f"cimload, {label}"] = f"failed: {out.stderr.strip()[-200:]}"
                break
            if cache_secs == 4 and n == 0:
                row.update(figures)
            # "  24849 operations/s, p50 2.55 ms, p99 5.80 ms, ..."
            line = next(l for l in out.stdout.splitlines() if "operations/s" in l)
            rate, p50, p99 = line.split(",")[:3]
            rates.append(float(rate.split()[0]))
            p50s.append(float(p50.split()[1]))
            p99s.append(float(p99.split()[1]))
        if rates:
            median = lambda xs: sorted(xs)[len(xs) // 2]
            row[f"requests/s; p50 / p99, 64 connections, 10 s, {label} (median of {runs})"] = (
                f"{median(rates):.0f}; {median(p50s):.2f} / {median(p99s):.2f} ms "
                f"(p99 {min(p99s):.1f} to {max(p99s):.1f})")
    return row


def idle_sockets(binary):
    srv = Server(binary)
    held = []
    try:
        m = Measure(srv.pid)
        for i in range(1100):
            try:
                held.append(connect(srv.http_port, f"127.0.0.{2 + i // 100}"))
            except OSError:
                break
        time.sleep(0.5)
        status, seconds = timed_valid_request(srv.http_port, creds=ADMIN)
        closed = 0
        for s in held:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        row = m.done()
        row["idle connections opened"] = str(len(held))
        row["then a valid request on a new connection"] = f"{status} in {seconds * 1000:.0f} ms"
        row["idle connections the server had closed by then"] = str(closed)
        return row
    finally:
        for s in held:
            s.close()
        srv.stop()


def anonymous_bodies(binary):
    srv = Server(binary)
    try:
        m = Measure(srv.pid)
        body = IDENTIFY.replace("<s:Header/>", "<s:Header/>" + " " * (15 * 1024 * 1024)).encode()
        answers, lock = [], threading.Lock()

        def send():
            try:
                with connect(srv.http_port) as s:
                    s.sendall((f"POST /wsman-anon/identify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               f"Content-Type: application/soap+xml;charset=UTF-8\r\n"
                               f"Content-Length: {len(body)}\r\n\r\n").encode())
                    try:
                        s.sendall(body)
                    except OSError:
                        pass  # refused before the body was read: the answer is waiting
                    status = read_response(s)[0]
            except OSError as e:
                status = type(e).__name__
            with lock:
                answers.append(status)

        for _ in range(3):
            threads = [threading.Thread(target=send) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        row = m.done()
        row["answers to 60 bodies of 15 MiB"] = count(answers)
        return row
    finally:
        srv.stop()


def half_closed(binary):
    srv = Server(binary)
    try:
        answered = []
        for _ in range(50):
            with connect(srv.http_port, timeout=10) as s:
                s.sendall(cimxml_request(ENUM_CLASS_NAMES, ADMIN))
                s.shutdown(socket.SHUT_WR)
                try:
                    answered.append(read_response(s)[0])
                except OSError as e:
                    answered.append(type(e).__name__)
        return {"answers to 50 half-closed requests": count(answered)}
    finally:
        srv.stop()


def retry_after_401(binary):
    srv = Server(binary)
    try:
        big = ENUM_CLASS_NAMES.replace("</CIM>", "<!--" + "x" * 100 * 1024 + "--></CIM>")
        results = []
        for _ in range(20):
            first = "-"
            try:
                with connect(srv.http_port, timeout=10) as s:
                    s.sendall(cimxml_request(big))
                    first = read_response(s)[0]
                    s.sendall(cimxml_request(big, ADMIN))
                    results.append(f"{first} then {read_response(s)[0]}")
            except OSError as e:
                results.append(f"{first} then {type(e).__name__}")
        return {"20 retries with 100 KiB on the same connection": count(results)}
    finally:
        srv.stop()


FLOODS = {
    "wrong-passwords": ("Wrong passwords: 300 over 150 connections", wrong_passwords),
    "stampede": ("Valid-credential stampede: cache expiries under 64 connections", stampede),
    "idle": ("Idle sockets: 1,100 TCP connections", idle_sockets),
    "anonymous": ("Anonymous bodies: 60 x 15 MiB to /wsman-anon/identify", anonymous_bodies),
    "half-closed": ("Half-closed requests", half_closed),
    "retry-401": ("401, then the retry on the same connection", retry_after_401),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(REPO / "target/release/cimvirtd"), help="the cimvirtd measured")
    ap.add_argument("--before", help="an earlier cimvirtd, measured in the same run as the peer")
    ap.add_argument("--cimload", default=str(REPO / "target/release/cimload"))
    ap.add_argument("--only", nargs="+", choices=FLOODS, help="run only these floods")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binaries = ([("before", args.before)] if args.before else []) + [("this build", args.binary)]
    rows = []
    for key in args.only or FLOODS:
        title, run = FLOODS[key]
        results = []
        for label, binary in binaries:
            print(f"{title}: {label} ...", file=sys.stderr, flush=True)
            results.append(run(binary, args.cimload) if key == "stampede" else run(binary))
        for measure in results[-1]:
            rows.append((title, measure, [r.get(measure, "") for r in results]))
    print()
    print(f"cimvirtd under hostile load; {os.cpu_count()} CPUs; clients on the same machine")
    print()
    print("| Flood | Measure | " + " | ".join(label for label, _ in binaries) + " |")
    print("|---|---|" + "---|" * len(binaries))
    for title, measure, values in rows:
        print(f"| {title} | {measure} | " + " | ".join(values) + " |")


if __name__ == "__main__":
    main()
