"""The VMs' consoles over the network, measured against the console log file in the same run:
a release cimvirtd on this host's KVM, a VM running the built-in test guest.

Prints Markdown tables:
- guest to client: the test guest's `t` command prints 64 KiB of text; the time from the
  command to its last line, seen by a WebSocket client (ws://, `websockets`) and by a reader
  polling the console log file, alternating, RUNS times each;
- a keystroke's round trip: one byte typed, the guest's echo seen, over the WebSocket, and
  typed through the VM's control socket with the echo read from the log file (what a
  console built on the log would see), 200 keystrokes each;
- what open sessions cost the server: its RSS and threads with none open, with 64 open (4
  VMs, 16 each, the per-VM limit) while the guests print, and after they closed; the 17th
  session of a VM is refused with 503.
Run through scripts/bench-console."""

import asyncio
import base64
import os
import statistics
import sys
import time
from pathlib import Path

import websockets

from bench_virt import PASSWORD, ms, rss_kib, start_server, stop_server, vm_request

RUNS = int(os.environ.get("RUNS", "10"))
KEYSTROKES = 200
TEXT_DONE = b"cimvirt test guest: text done\n"
BANNER = b"vCPUs online\n"


def define_and_start(conn, name):
    import pywbem
    from pywbem import CIMInstance, Uint16, Uint64
    (svc,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
    vssd = CIMInstance("KVM_VirtualSystemSettingData",
                       properties={"VirtualSystemIdentifier": name})
    mem = CIMInstance("KVM_MemResourceAllocationSettingData",
                      properties={"ResourceType": Uint16(4), "VirtualQuantity": Uint64(32),
                                  "AllocationUnits": "byte*2^20"})
    rv, out = conn.InvokeMethod("DefineSystem", svc, SystemSettings=vssd, ResourceSettings=[mem])
    assert rv == 0, rv
    system = out["ResultingSystem"]
    rv, _ = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(2))
    assert rv == 0, rv
    uuid = conn.GetInstance(pywbem.CIMInstanceName(
        "KVM_VirtualSystemSettingData", {"InstanceID": f"KVM:{name}"},
        namespace="root/virt"))["UUID"].lower()
    return uuid


def headers():
    token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def read_until(ws, wanted, seen=b""):
    while wanted not in seen:
        message = await ws.recv()
        if isinstance(message, bytes):
            seen += message
    return seen


def log_size(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def wait_in_log(path, wanted, start):
    """Polls the log (every 0.1 ms) until `wanted` appears after byte `start`; a log that
    rotated meanwhile (at 1 MiB it is copied to .1 and emptied) is read from its start."""
    with open(path, "rb") as f:
        while True:
            if os.fstat(f.fileno()).st_size < start:
                start = 0
            f.seek(start)
            if wanted in f.read():
                return
            time.sleep(0.0001)


async def throughput(url, data, uuid):
    log = data / "vms" / f"{uuid}.console.log"
    ws_times, file_times = [], []
    async with websockets.connect(url, additional_headers=headers(), max_size=None) as ws:
        await read_until(ws, BANNER)
        for _ in range(RUNS):
            # Over the WebSocket: typed there, read there.
            started = time.perf_counter()
            await ws.send(b"t")
            await read_until(ws, TEXT_DONE)
            ws_times.append(time.perf_counter() - started)
            # From the log file: typed through the control socket, the file polled.
            await asyncio.sleep(0.05)
            start = log_size(log)
            started = time.perf_counter()
            vm_request(data, None, {"request": "send_console", "bytes": list(b"t")}, run_id=uuid)
            wait_in_log(log, TEXT_DONE, start)
            file_times.append(time.perf_counter() - started)
            # Drain what the WebSocket got meanwhile.
            await read_until(ws, TEXT_DONE)
    return ws_times, file_times


async def keystrokes(url, data, uuid):
    log = data / "vms" / f"{uuid}.console.log"
    ws_times, file_times = [], []
    async with websockets.connect(url, additional_headers=headers(), max_size=None) as ws:
        await read_until(ws, BANNER)
        for i in range(KEYSTROKES):
            key = bytes([ord("A") + i % 26])
            started = time.perf_counter()
            await ws.send(key)
            await read_until(ws, key)
            ws_times.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
        for i in range(KEYSTROKES):
            key = bytes([ord("A") + i % 26])
            start = log_size(log)
            started = time.perf_counter()
            vm_request(data, None, {"request": "send_console", "bytes": list(key)}, run_id=uuid)
            wait_in_log(log, key, start)
            file_times.append(time.perf_counter() - started)
    return ws_times, file_times


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


async def sessions(base, server, names):
    idle = (rss_kib(server.pid), threads(server.pid))
    open_sockets = []
    for name in names:
        for _ in range(16):
            ws = await websockets.connect(f"{base}/console/{name}", additional_headers=headers(),
                                          max_size=None)
            open_sockets.append(ws)
    try:
        await websockets.connect(f"{base}/console/{names[0]}", additional_headers=headers())
        refused = "accepted"
    except websockets.exceptions.InvalidStatus as e:
        refused = str(e.response.status_code)
    # Every guest prints its 64 KiB to all 16 sessions at once.
    for name_index in range(len(names)):
        await open_sockets[name_index * 16].send(b"t")
    await asyncio.gather(*(read_until(ws, TEXT_DONE) for ws in open_sockets))
    loaded = (rss_kib(server.pid), threads(server.pid))
    for ws in open_sockets:
        await ws.close()
    await asyncio.sleep(1)
    closed = (rss_kib(server.pid), threads(server.pid))
    return idle, loaded, closed, refused


def main():
    import websockets.exceptions  # noqa: F401 (used in sessions)
    import pywbem
    binary = Path(sys.argv[1])
    server, data, port = start_server(binary)
    try:
        conn = pywbem.WBEMConnection(f"http://127.0.0.1:{port}", ("admin", PASSWORD),
                                     default_namespace="root/virt", timeout=60)
        names = [f"console{i}" for i in range(4)]
        uuids = [define_and_start(conn, n) for n in names]
        base = f"ws://127.0.0.1:{port}"
        time.sleep(1)
        ws_t, file_t = asyncio.run(throughput(f"{base}/console/{names[0]}", data, uuids[0]))
        sent = 1024 * 64 + len(TEXT_DONE)
        print(f"\n### Guest to client: 64 KiB printed by the test guest ({RUNS} runs each)\n")
        print("| path | median ms | MB/s (median) | p99 ms |")
        print("|---|---:|---:|---:|")
        for label, samples in (("WebSocket client (ws://)", ws_t), ("console log file, polled", file_t)):
            p50, p99 = ms([s * 1000 for s in samples])
            print(f"| {label} | {p50:.1f} | {sent / (p50 / 1000) / 1e6:.2f} | {p99:.1f} |")
        ws_k, file_k = asyncio.run(keystrokes(f"{base}/console/{names[1]}", data, uuids[1]))
        print(f"\n### A keystroke's round trip: typed, the guest's echo seen ({KEYSTROKES} each)\n")
        print("| path | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        for label, samples in (("WebSocket: typed and echoed over it", ws_k),
                               ("control socket typed, log file polled", file_k)):
            p50, p99 = ms([s * 1000 for s in samples])
            print(f"| {label} | {p50:.2f} | {p99:.2f} |")
        p50_ws, _ = ms(ws_k)
        p50_file, _ = ms(file_k)
        print(f"\nAdded by the WebSocket path (p50): {(p50_ws - p50_file) * 1000:+.2f} ms")
        idle, loaded, closed, refused = asyncio.run(sessions(base, server, names))
        print("\n### What console sessions cost the server\n")
        print("| | server RSS MiB | threads |")
        print("|---|---:|---:|")
        print(f"| no session | {idle[0] / 1024:.1f} | {idle[1]} |")
        print(f"| 64 sessions (4 VMs x 16), each guest printing 64 KiB to its 16 | "
              f"{loaded[0] / 1024:.1f} | {loaded[1]} |")
        print(f"| after they closed | {closed[0] / 1024:.1f} | {closed[1]} |")
        print(f"\nA 17th session on one VM: HTTP {refused}")
    finally:
        stop_server(server, data)


if __name__ == "__main__":
    main()
