"""The virtualization providers end to end, as a management client sees them: pywbem
against a release cimvirtd on this host's KVM, VMs running the built-in test guest.

Prints Markdown tables: RequestStateChange(2) to the guest running, DefineSystem to the
guest running, EnumerateInstances of KVM_ComputerSystem with 100 defined VMs (10 running),
100 VMs defined, started and destroyed, and the memory of cimvirtd and of a VM process; start,
restore and VM process memory with the VM sandbox on and off; then
the scale table: with 1,000 VMs defined and 50 running, the server's answer to enumerations
and to GetInstance of one VM (the request sent raw over a kept-alive connection, the response
read whole, so that no client's XML parsing is in the figure), for this build and, with
`--before OLD_CIMVIRTD`, for another one in the same run. Run through scripts/bench-virt."""

import argparse
import base64
import http.client
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

from cimvirtd_ports import wait_for_ports

RUNS = int(os.environ.get("RUNS", "20"))
PASSWORD = "bench-password"


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


def start_server(binary, sandbox=True):
    """A release cimvirtd on a fresh data directory with user admin, its VM processes
    confined unless `sandbox` is false; (server, data, port)."""
    data = Path(tempfile.mkdtemp(prefix="cimvirt-bench-"))
    subprocess.run([binary, "user", "add", "admin", "--access", "read-write", "--data-dir", data],
                   input=f"{PASSWORD}\n".encode(), check=True, capture_output=True)
    config = data / "cimvirtd.toml"
    config.write_text(f"[vmm]\nsandbox = {'true' if sandbox else 'false'}\n")
    log = open(data / "server.log", "w")
    server = subprocess.Popen([binary, "serve", "--data-dir", data, "--config", config,
                               "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        port, _ = wait_for_ports(server, data / "server.log", timeout=120)
    except RuntimeError as e:
        sys.exit(f"{binary} did not start: {e}")
    return server, data, port


def lifecycle_table(binary):
    server, data, port = start_server(binary)
    try:
        conn = pywbem.WBEMConnection(f"http://127.0.0.1:{port}", ("admin", PASSWORD),
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


def change_and_wait(conn, system, requested):
    """RequestStateChange, following a job (4096) to its end."""
    rv, out = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(requested))
    if rv == 4096:
        while conn.GetInstance(out["Job"])["JobState"] not in (7, 8, 10):
            time.sleep(0.002)
        assert conn.GetInstance(out["Job"])["JobState"] == 7, requested
    else:
        assert rv == 0, (requested, rv)


def sandbox_table(binary):
    """Start, restore from a saved state, and the VM process's memory, with [vmm] sandbox
    on and then off: one server after the other, each on its own data directory."""
    results = {}
    for sandbox in (True, False):
        server, data, port = start_server(binary, sandbox)
        try:
            conn = pywbem.WBEMConnection(f"http://127.0.0.1:{port}", ("admin", PASSWORD),
                                         default_namespace="root/virt")
            (svc,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
            start, restore, beside = [], [], []
            for i in range(RUNS):
                name = f"sandbox{i}"
                system = define(conn, svc, name)
                t = time.perf_counter()
                state(conn, system, 2)
                wait_running(data, name)
                start.append((time.perf_counter() - t) * 1e3)
                pid = status(data, name)["pid"]
                beside.append((rss_kib(pid) - rss_kib(pid, "RssShmem:")) / 1024)
                change_and_wait(conn, system, 6)  # saved to disk
                t = time.perf_counter()
                change_and_wait(conn, system, 2)
                wait_running(data, name)
                restore.append((time.perf_counter() - t) * 1e3)
                conn.InvokeMethod("DestroySystem", svc, AffectedSystem=system)
            results[sandbox] = [
                ("RequestStateChange(2) to the guest running", "ms", ms(start)),
                ("RequestStateChange(2) of a saved VM to the guest running (restore)", "ms",
                 ms(restore)),
                ("VM process RSS beside guest memory (16 MiB idle guest)", "MiB", ms(beside)),
            ]
        finally:
            stop_server(server, data)
    print("| Measurement (sandbox on vs off) | Unit | On: median / p99 | Off: median / p99 "
          "| On - off, medians |")
    print("|---|---|---:|---:|---:|")
    for (label, unit, on), (_, _, off) in zip(results[True], results[False]):
        print(f"| {label} | {unit} | {on[0]:.2f} / {on[1]:.2f} | {off[0]:.2f} / {off[1]:.2f} "
              f"| {on[0] - off[0]:+.2f} |")


def imethodcall(method, params):
    """A CIM-XML intrinsic method call in root/virt."""
    return ('<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
            '<MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
            f'<IMETHODCALL NAME="{method}"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/>'
            f'<NAMESPACE NAME="virt"/></LOCALNAMESPACEPATH>{params}</IMETHODCALL>'
            '</SIMPLEREQ></MESSAGE></CIM>').encode()


def class_param(class_name):
    return f'<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="{class_name}"/></IPARAMVALUE>'


def system_param(name):
    return ('<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="KVM_ComputerSystem">'
            '<KEYBINDING NAME="CreationClassName"><KEYVALUE VALUETYPE="string">KVM_ComputerSystem'
            '</KEYVALUE></KEYBINDING><KEYBINDING NAME="Name"><KEYVALUE VALUETYPE="string">'
            f'{name}</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE>')


class RawClient:
    """CIM-XML requests sent as bytes over one kept-alive connection, answers read whole."""

    def __init__(self, port):
        self.http = http.client.HTTPConnection("127.0.0.1", port)
        self.auth = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()

    def call(self, method, body):
        """Seconds from sending the request to having read all of the answer; the answer."""
        headers = {"Content-Type": 'application/xml; charset="utf-8"', "CIMOperation": "MethodCall",
                   "CIMMethod": method, "CIMObject": "root%2Fvirt", "Authorization": self.auth}
        t = time.perf_counter()
        self.http.request("POST", "/cimom", body, headers)
        response = self.http.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - t
        if response.status != 200 or b"<ERROR" in answer:
            sys.exit(f"{method} failed: {response.status} {answer[:500]!r}")
        return elapsed, answer


def scale_rows(binary, vms, running):
    """The server's answers with `vms` VMs defined and the first `running` running."""
    server, data, port = start_server(binary)
    try:
        conn = pywbem.WBEMConnection(f"http://127.0.0.1:{port}", ("admin", PASSWORD),
                                     default_namespace="root/virt")
        (svc,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
        systems = [define(conn, svc, f"vm{i:04}") for i in range(vms)]
        for system in systems[:running]:
            state(conn, system, 2)
        # Measured once every guest runs: a booting one takes the CPUs from the server.
        for i in range(running):
            wait_running(data, f"vm{i:04}")
        client = RawClient(port)
        requests = [
            ("EnumerateInstances KVM_ComputerSystem", "EnumerateInstances",
             imethodcall("EnumerateInstances", class_param("KVM_ComputerSystem")),
             b"<VALUE.NAMEDINSTANCE>", vms),
            ("EnumerateInstanceNames KVM_ComputerSystem", "EnumerateInstanceNames",
             imethodcall("EnumerateInstanceNames", class_param("KVM_ComputerSystem")),
             b"<INSTANCENAME ", vms),
            ("EnumerateInstances KVM_VirtualSystemSettingData", "EnumerateInstances",
             imethodcall("EnumerateInstances", class_param("KVM_VirtualSystemSettingData")),
             b"<VALUE.NAMEDINSTANCE>", vms),
            ("GetInstance of a running VM", "GetInstance",
             imethodcall("GetInstance", system_param("vm0000")), b"<INSTANCE ", 1),
            ("GetInstance of a stopped VM", "GetInstance",
             imethodcall("GetInstance", system_param(f"vm{vms - 1:04}")), b"<INSTANCE ", 1),
        ]
        rows = []
        for label, method, body, marker, expected in requests:
            client.call(method, body)  # the connection and the server's caches warm
            samples = []
            for _ in range(RUNS):
                elapsed, answer = client.call(method, body)
                samples.append(elapsed * 1e3)
            found = answer.count(marker)
            if found != expected:
                sys.exit(f"{label}: {found} instances in the answer, not {expected}")
            rows.append((label, *ms(samples)))
        rows.append(("cimvirtd RSS", rss_kib(server.pid) / 1024, None))
        return rows
    finally:
        stop_server(server, data)


def scale_table(binary, before, vms, running):
    after = scale_rows(binary, vms, running)
    columns = [("this build", after)]
    if before:
        columns.insert(0, ("before", scale_rows(before, vms, running)))
    print(f"{vms} VMs defined, {running} running (test guest, 16 MiB); the server's answer, "
          f"{RUNS} runs each")
    print()
    header = " | ".join(f"{name} median | {name} p99" for name, _ in columns)
    print(f"| Request | {header} | Unit |")
    print("|---|" + "---:|---:|" * len(columns) + "---|")
    for i, (label, *_) in enumerate(after):
        cells = []
        for _, rows in columns:
            _, median, p99 = rows[i]
            cells += [f"{median:.2f}", "" if p99 is None else f"{p99:.2f}"]
        unit = "MiB" if after[i][2] is None else "ms"
        print(f"| {label} | " + " | ".join(cells) + f" | {unit} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", type=Path, help="the cimvirtd to measure")
    parser.add_argument("--before", type=Path, help="another cimvirtd, measured in the same run")
    parser.add_argument("--scale-only", action="store_true", help="only the scale table")
    parser.add_argument("--sandbox-only", action="store_true",
                        help="only the table of the sandbox on and off")
    parser.add_argument("--vms", type=int, default=1000, help="VMs defined for the scale table")
    parser.add_argument("--running", type=int, default=50, help="of which running")
    args = parser.parse_args()
    binary = args.binary.resolve()
    if args.sandbox_only:
        sandbox_table(binary)
        return
    if not args.scale_only:
        lifecycle_table(binary)
        print()
        sandbox_table(binary)
        print()
    scale_table(binary, args.before.resolve() if args.before else None, args.vms, args.running)


if __name__ == "__main__":
    main()
