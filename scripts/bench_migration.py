"""Migration between two cimvirt hosts on this machine, as a management client drives it:
two release cimvirtd servers on loopback (sharing one certificate, each with the other's
account), one VM running the built-in test guest, its memory above 4 MiB filled with a pattern (the
guest's `f` command), moved back and forth with MigrateVirtualSystemToHost: Live (pre-copy,
MigrationType 2) and Resume (stop-and-copy, 3) in the same run.

Prints a Markdown table per guest size and type: the time from the method call to the
job's completion as the client polls it, the time the guest was paused (from the source's
log: from the pause to the destination's answer to the commit, which comes after the
restore), the bytes sent, and Live's pause as a fraction of Resume's. Run through
scripts/bench-migration."""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pywbem
from pywbem import CIMInstance, Uint16, Uint64

from cimvirtd_ports import wait_for_ports

from bench_virt import heartbeat, ms, stop_server, vm_request, vm_uuid, wait_running

BINARY = Path(sys.argv[1] if len(sys.argv) > 1 else "target/release/cimvirtd").resolve()
RUNS = int(os.environ.get("RUNS", "20"))
PASSWORD = "bench-password"


def fill_memory(data, name):
    """Has the guest write a pattern over its memory above 4 MiB, so that all of it moves."""
    assert vm_request(data, name, {"request": "send_console", "bytes": list(b"f")})["response"] == "ok"
    console = data / "vms" / f"{vm_uuid(name)}.console.log"
    while "filled" not in console.read_text():
        time.sleep(0.01)


def start(data, config):
    subprocess.run([BINARY, "user", "add", "admin", "--access", "read-write", "--data-dir", data], input=f"{PASSWORD}\n".encode(),
                   check=True, capture_output=True)
    log = open(data / "server.log", "w")
    proc = subprocess.Popen([BINARY, "serve", "--data-dir", data, "--config", config,
                             "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"],
                            stdout=log, stderr=subprocess.STDOUT)
    http, https = wait_for_ports(proc, data / "server.log", timeout=120)
    conn = pywbem.WBEMConnection(f"http://127.0.0.1:{http}", ("admin", PASSWORD),
                                 default_namespace="root/virt")
    return proc, conn, f"127.0.0.1:{https}"


def main():
    base = Path(tempfile.mkdtemp(prefix="cimvirt-bench-migration-"))
    (base / "password").write_text(PASSWORD + "\n")
    migration = f'[migration]\nuser = "admin"\npassword_file = "{base / "password"}"\n'
    (base / "a.toml").write_text(migration)
    hosts = []
    try:
        (base / "a").mkdir()
        hosts.append((base / "a", *start(base / "a", base / "a.toml")))
        tls = base / "a" / "tls"
        (base / "b.toml").write_text(f'[tls]\ncert = "{tls / "cert.pem"}"\nkey = "{tls / "key.pem"}"\n'
                                     + migration)
        (base / "b").mkdir()
        hosts.append((base / "b", *start(base / "b", base / "b.toml")))
        print("| Guest memory | Type | Runs | Call to job completed, median | p99 | Guest paused, median | p99 | Sent | Paused, Live/Resume |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for memory_mib in (64, 1024):
            name = f"mover{memory_mib}"
            data, _, conn, _ = hosts[0]
            (svc,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
            vssd = CIMInstance("KVM_VirtualSystemSettingData",
                               properties={"VirtualSystemIdentifier": name, "UUID": vm_uuid(name)})
            mem = CIMInstance("KVM_MemResourceAllocationSettingData",
                              properties={"ResourceType": Uint16(4), "VirtualQuantity": Uint64(memory_mib),
                                          "AllocationUnits": "byte*2^20"})
            system = conn.InvokeMethod("DefineSystem", svc, SystemSettings=vssd, ResourceSettings=[mem])[1]["ResultingSystem"]
            assert conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(2))[0] == 0
            wait_running(data, name)
            fill_memory(data, name)
            paused_median = {}
            for migration_type, label in ((3, "Resume"), (2, "Live")):
                calls, pauses, sent = [], [], []
                settings = CIMInstance("KVM_VirtualSystemMigrationSettingData",
                                       properties={"MigrationType": Uint16(migration_type)})
                for run in range(RUNS):
                    owner = [h for h in hosts
                             if name in {p["Name"] for p in h[2].EnumerateInstanceNames("KVM_ComputerSystem")}][0]
                    (src_data, _, src, _) = owner
                    (dst_data, _, dst, dst_host) = hosts[1] if owner is hosts[0] else hosts[0]
                    (migration_svc,) = src.EnumerateInstanceNames("KVM_VirtualSystemMigrationService")
                    (system,) = [p for p in src.EnumerateInstanceNames("KVM_ComputerSystem") if p["Name"] == name]
                    before = heartbeat(src_data, name)
                    t = time.perf_counter()
                    rv, out = src.InvokeMethod("MigrateVirtualSystemToHost", migration_svc, ComputerSystem=system,
                                               DestinationHost=dst_host, MigrationSettingData=settings)
                    assert rv == 4096, rv
                    while (job := src.GetInstance(out["Job"]))["JobState"] == 4:
                        time.sleep(0.001)
                    calls.append((time.perf_counter() - t) * 1e3)
                    assert job["JobState"] == 7, job["ErrorDescription"]
                    assert heartbeat(dst_data, name) >= before, "the guest went on from where it was"
                    line = [l for l in (src_data / "server.log").read_text().splitlines()
                            if "moved to" in l and f'vm="{name}"' in l][-1]
                    pauses.append(int(re.search(r"paused_ms=(\d+)", line).group(1)))
                    sent.append(int(re.search(r"bytes=(\d+)", line).group(1)))
                call_median, call_p99 = ms(calls)
                pause_median, pause_p99 = ms(pauses)
                paused_median[label] = pause_median
                ratio = (f"{pause_median / paused_median['Resume']:.2f}" if label == "Live" else "")
                print(f"| {memory_mib} MiB | {label} | {RUNS} | {call_median:.1f} ms | {call_p99:.1f} ms | "
                      f"{pause_median:.0f} ms | {pause_p99:.0f} ms | {statistics.median(sent) / 2**20:.1f} MiB | "
                      f"{ratio} |")
            (owner,) = [h for h in hosts if name in {p["Name"] for p in h[2].EnumerateInstanceNames("KVM_ComputerSystem")}]
            (svc,) = owner[2].EnumerateInstanceNames("KVM_VirtualSystemManagementService")
            (system,) = [p for p in owner[2].EnumerateInstanceNames("KVM_ComputerSystem") if p["Name"] == name]
            owner[2].InvokeMethod("DestroySystem", svc, AffectedSystem=system)
    finally:
        for data, proc, *_ in hosts:
            stop_server(proc, data)


if __name__ == "__main__":
    main()
