"""The virtualization providers end to end, as a management client sees them: pywbem
against a release cimvirtd on this host's KVM, VMs running the built-in test guest.

Prints a Markdown table: RequestStateChange(2) to the guest running, DefineSystem to the
guest running, EnumerateInstances of KVM_ComputerSystem with 100 defined VMs (10 running),
100 VMs defined, started and destroyed, and the memory of cimvirtd and of a VM process.
Run through scripts/bench-virt."""

import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pywbem
from pywbem import CIMInstance, Uint16, Uint64

BINARY = Path(sys.argv[1] if len(sys.argv) > 1 else "target/release/cimvirtd").resolve()
RUNS = int(os.environ.get("RUNS", "20"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vm_uuid(name):
    """The UUID the benchmarks define VM `name` with, so that its files (named by UUID) are
    found without asking the server."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cimvirt-bench:{name}"))


def vm_request(data, name, message, run_id=None):
    """One request to the VM process over its control socket; its answer."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(data / "run" / f"{run_id or vm_uuid(name)}.sock"))

    def call(message):
        body = json.dumps(message).encode()
        sock.sendall(struct.pack("<I", len(body)) + body)
        header = b""
        while len(header) < 4:
            header += sock.recv(4 - len(header))
        (length,) = struct.unpack("<I", header)
        payload = b""
        while len(payload) < length:
            payload += sock.recv(length - len(payload))
        return json.loads(payload)

    try:
        call({"request": "hello", "version": 1})
        return call(message)
    finally:
        sock.close()


def status(data, name, run_id=None):
    """The VM process's status, from its control socket."""
    return vm_request(data, name, {"request": "status"}, run_id)


def stop_server(server, data):
    """SIGTERM to the server, then SIGKILL to the VMs it leaves: VMs outlive their server by
    design, and a benchmark run must not leave any behind."""
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    for sock in (data / "run").glob("*.sock"):
        try:
            os.kill(status(data, None, run_id=sock.stem)["pid"], signal.SIGKILL)
        except OSError:
            pass


def heartbeat(data, name):
    """The first vCPU's heartbeat."""
    return status(data, name)["heartbeats"][0]


def wait_running(data, name):
    """Until the guest's timer has ticked: it is running guest code."""
    while True:
        try:
            if heartbeat(data, name) > 0:
                return
        except OSError:
            pass
        time.sleep(0.0005)


def rss_kib(pid, field="VmRSS:"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def define(conn, svc, name):
    vssd = CIMInstance("KVM_VirtualSystemSettingData",
                       properties={"VirtualSystemIdentifier": name, "UUID": vm_uuid(name)})
    proc = CIMInstance("KVM_ProcResourceAllocationSettingData",
                       properties={"ResourceType": Uint16(3), "VirtualQuantity": Uint64(1)})
    mem = CIMInstance("KVM_MemResourceAllocationSettingData",
                      properties={"ResourceType": Uint16(4), "VirtualQuantity": Uint64(16),
                                  "AllocationUnits": "byte*2^20"})
    rv, out = conn.InvokeMethod("DefineSystem", svc, SystemSettings=vssd, ResourceSettings=[proc, mem])
    assert rv == 0, rv
    return out["ResultingSystem"]


def state(conn, system, requested):
    rv, _ = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(requested))
    assert rv == 0, (requested, rv)


def ms(samples):
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]


def main():
    data = Path(tempfile.mkdtemp(prefix="cimvirt-bench-"))
    subprocess.run([BINARY, "user", "add", "admin", "--access", "read-write", "--data-dir", data], input=b"bench-password\n",
                   check=True, capture_output=True)
    port = free_port()
    log = open(data / "server.log", "w")
    server = subprocess.Popen([BINARY, "serve", "--data-dir", data, "--http", f"127.0.0.1:{port}",
                               "--https", f"127.0.0.1:{free_port()}"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        while "cimvirtd ready" not in (data / "server.log").read_text():
            time.sleep(0.05)
        conn = pywbem.WBEMConnection(f"http://127.0.0.1:{port}", ("admin", "bench-password"),
                                     default_namespace="root/virt")
        (svc,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
        rows = []

        start, define_to_run = [], []
        for i in range(RUNS):
            name = f"run{i}"
            t0 = time.perf_counter()
            system = define(conn, svc, name)
            t1 = time.perf_counter()
            state(conn, system, 2)
            wait_running(data, name)
            t2 = time.perf_counter()
            start.append((t2 - t1) * 1e3)
            define_to_run.append((t2 - t0) * 1e3)
            conn.InvokeMethod("DestroySystem", svc, AffectedSystem=system)
        rows.append(("RequestStateChange(2) to the guest running", RUNS, *ms(start), "ms"))
        rows.append(("DefineSystem to the guest running", RUNS, *ms(define_to_run), "ms"))

        systems = [define(conn, svc, f"vm{i:03}") for i in range(100)]
        for system in systems[:10]:
            state(conn, system, 2)
        enum = []
        for _ in range(RUNS):
            t = time.perf_counter()
            found = conn.EnumerateInstances("KVM_ComputerSystem")
            enum.append((time.perf_counter() - t) * 1e3)
        assert len(found) == 100
        rows.append(("EnumerateInstances KVM_ComputerSystem, 100 VMs (10 running)", RUNS, *ms(enum), "ms"))
        server_rss = rss_kib(server.pid) / 1024
        vm_pid = status(data, "vm000")["pid"]
        vm_rss = rss_kib(vm_pid) / 1024
        vm_shmem = rss_kib(vm_pid, "RssShmem:") / 1024
        for system in systems:
            conn.InvokeMethod("DestroySystem", svc, AffectedSystem=system)

        t = time.perf_counter()
        for i in range(100):
            system = define(conn, svc, f"cycle{i:03}")
            state(conn, system, 2)
            conn.InvokeMethod("DestroySystem", svc, AffectedSystem=system)
        cycle = time.perf_counter() - t
        rows.append(("100 VMs defined, started and destroyed, one after another", 1, cycle, cycle, "s"))
        rows.append(("cimvirtd RSS with 100 VMs defined, 10 running", 1, server_rss, server_rss, "MiB"))
        rows.append(("VM process RSS beside guest memory (16 MiB idle guest)", 1, vm_rss - vm_shmem,
                     vm_rss - vm_shmem, "MiB"))

        print("| Measurement | Runs | Median | p99 | Unit |")
        print("|---|---:|---:|---:|---|")
        for name, runs, median, p99, unit in rows:
            print(f"| {name} | {runs} | {median:.2f} | {p99:.2f} | {unit} |")
    finally:
        stop_server(server, data)


if __name__ == "__main__":
    main()
