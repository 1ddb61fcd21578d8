#!/usr/bin/env python3
"""cimvirtd against OpenPegasus 2.14.4's cimserver, measured in the same run with the same
load generator (cimload) and the same request bodies, where both servers have the class:
GetClass CIM_ComputerSystem, EnumerateClassNames, EnumerateInstances of CIM_Namespace in
each server's interop namespace, and 1,000 instances of one class created in both through
CreateInstance, enumerated and got. cimvirtd always authenticates; OpenPegasus is measured
with and without authentication. Prints Markdown tables: requests/s, p50/p99, server CPU
per request and the ratios, response sizes, and each server's RSS before and after.

Usage: bench_peer.py CIMVIRTD CIMLOAD OPENPEGASUS_DIR (run by scripts/bench-server).
Environment: DURATION (seconds per cell, default 3), PEER_CONCURRENCY (default "1 16 64").
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cimvirtd_ports import wait_for_ports

DURATION = os.environ.get("DURATION", "3")
CONCURRENCY = os.environ.get("PEER_CONCURRENCY", "1 16 64").split()
PASSWORD = "bench-password"
INSTANCES = 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_port(port, proc, log):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {Path(log).read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not listen on {port}")


class Cimvirtd:
    name = "cimvirtd"
    user = "admin"
    namespace = "root/virt"
    interop = "interop"

    def __init__(self, binary):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-cimvirtd-"))
        subprocess.run([binary, "user", "add", self.user, "--access", "read-write",
                        "--data-dir", str(self.dir)], input=PASSWORD + "\n", text=True,
                       check=True, capture_output=True)
        self.log = self.dir / "server.log"
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", str(self.dir),
             "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        self.port, _ = wait_for_ports(self.proc, self.log)
        self.pid = self.proc.pid

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


class OpenPegasus:
    name = "OpenPegasus"
    user = "root"
    namespace = "root/cimv2"
    interop = "root/PG_InterOp"

    def __init__(self, home, authentication):
        self.home = Path(home).resolve()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-openpegasus-"))
        # A fresh copy of the compiled repository; the providers stay where they are.
        shutil.copytree(self.home / "repository", self.dir / "repository")
        (self.dir / "lib").symlink_to(self.home / "lib")
        self.env = {**os.environ, "PEGASUS_HOME": str(self.dir)}
        self.port = free_port()
        self.log = self.dir / "server.log"
        self.proc = subprocess.Popen(
            [str(self.home / "bin" / "cimserver"), "daemon=false", "enableHttpConnection=true",
             f"httpPort={self.port}", "enableHttpsConnection=false", "listenAddress=127.0.0.1",
             f"enableAuthentication={'true' if authentication else 'false'}"],
            env=self.env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, self.log)
        self.pid = self.proc.pid
        if authentication:
            subprocess.run([str(self.home / "bin" / "cimuser"), "-a", "-u", self.user, "-w", PASSWORD],
                           env=self.env, check=True, capture_output=True)
        self.name = f"OpenPegasus ({'with' if authentication else 'without'} authentication)"

    def stop(self):
        subprocess.run([str(self.home / "bin" / "cimserver"), "-s"], env=self.env,
                       capture_output=True)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# (label, cimload op, class, namespace attribute)
CELLS = [
    ("GetClass CIM_ComputerSystem", "get-class", "CIM_ComputerSystem", "namespace"),
    ("EnumerateClassNames (deep, all)", "enumerate-class-names", "CIM_ManagedElement", "namespace"),
    ("EnumerateInstances CIM_Namespace", "enumerate-instances", "CIM_Namespace", "interop"),
    ("GetInstance Bench_Peer", "get-instance", "Bench_Peer", "namespace"),
    (f"EnumerateInstances Bench_Peer ({INSTANCES})", "enumerate-instances", "Bench_Peer", "namespace"),
]


def cimload(cimload_bin, server, *args):
    r = subprocess.run([cimload_bin, *args, "--url", f"http://127.0.0.1:{server.port}",
                        "--user", server.user, "--password", PASSWORD],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cimload {' '.join(args)} against {server.name}: {r.stderr}")
    return r.stdout


def measure(cimload_bin, server):
    """Every cell at every concurrency: {(label, c): (rate, p50, p99, cpu, kib)}, and the
    server's RSS at its start and at the end."""
    start_rss = rss_mib(server.pid)
    cimload(cimload_bin, server, "populate", "--namespace", server.namespace,
            "--class", "Bench_Peer", "--count", str(INSTANCES))
    out = {}
    for label, op, cls, ns in CELLS:
        for c in CONCURRENCY:
            line = cimload(cimload_bin, server, "run", "--namespace", getattr(server, ns),
                           "--op", op, "--class", cls, "--concurrency", c,
                           "--duration", DURATION, "--server-pid", str(server.pid), "--tsv")
            rate, p50, p99, cpu, kib, _, _ = line.split("\t")
            out[(label, c)] = (float(rate), float(p50), float(p99), float(cpu), float(kib))
            print(f"  {server.name}: {label} x{c}: {rate} req/s", file=sys.stderr)
    return out, start_rss, rss_mib(server.pid)


def table(ours, peer, peer_name):
    print(f"cimvirtd (authenticating) against {peer_name}:")
    print()
    print("| Operation | Conc. | cimvirtd req/s | OpenPegasus req/s | ratio | cimvirtd p50 / p99 ms "
          "| OpenPegasus p50 / p99 ms | cimvirtd CPU µs/req | OpenPegasus CPU µs/req | CPU ratio "
          "| KiB/resp cimvirtd / OpenPegasus |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, *_ in CELLS:
        for c in CONCURRENCY:
            a, b = ours[(label, c)], peer[(label, c)]
            print(f"| {label} | {c} | {a[0]:.0f} | {b[0]:.0f} | {a[0] / b[0]:.1f} "
                  f"| {a[1]:.2f} / {a[2]:.2f} | {b[1]:.2f} / {b[2]:.2f} | {a[3]:.0f} | {b[3]:.0f} "
                  f"| {a[3] / b[3]:.2f} | {a[4]:.1f} / {b[4]:.1f} |")
    print()


def main():
    cimvirtd_bin, cimload_bin, pegasus_home = sys.argv[1:4]
    results = {}
    for make in (lambda: Cimvirtd(cimvirtd_bin),
                 lambda: OpenPegasus(pegasus_home, authentication=True),
                 lambda: OpenPegasus(pegasus_home, authentication=False)):
        server = make()
        try:
            results[server.name] = measure(cimload_bin, server)
        finally:
            server.stop()
    (ours, ours_start, ours_end) = results.pop("cimvirtd")
    print(f"cimvirtd against OpenPegasus 2.14.4's cimserver, {DURATION} s per cell, HTTP, "
          f"cimload on the same machine ({os.cpu_count()} CPUs); CPU is each server process's "
          "user + system time over the cell")
    print()
    for name, (peer, _, _) in results.items():
        table(ours, peer, name)
    print("Server RSS at start and after every cell (MiB):")
    print()
    print("| Server | start | after | growth |")
    print("|---|---:|---:|---:|")
    print(f"| cimvirtd | {ours_start:.1f} | {ours_end:.1f} | {ours_end - ours_start:+.1f} |")
    for name, (_, start, end) in results.items():
        print(f"| {name} | {start:.1f} | {end:.1f} | {end - start:+.1f} |")


if __name__ == "__main__":
    main()
