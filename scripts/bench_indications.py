#!/usr/bin/env python3
"""Indication delivery under failure, against a real cimvirtd and real VMs (the built-in
test guest on /dev/kvm). Prints Markdown tables.

1. Reliability: VMS VMs are paused and resumed CHANGES times in all, while a pywbem
   WBEMListener and a WS-Eventing sink (Push) receive their KVM_ComputerSystem indications.
   The listener is stopped RESTARTS times (each time for up to twice the retry interval,
   DeliveryRetryInterval set to 1 s), and cimvirtd is killed with SIGKILL once, halfway,
   and started again. Each receiver's indications are then checked: per VM, each state
   change's PreviousInstance must be the state the one before reported (a lost indication
   breaks that chain); within a SequenceContext, SequenceNumber must grow by one (an
   indication out of order or missing breaks it); a duplicate is the same context and
   number again, which DSP1054 permits after a retry.
2. Isolation: one VM paused and resumed DELAY_CHANGES times, 50 ms apart, with a working
   pywbem listener alone, then with a listener that refuses connections and one that
   accepts them and never answers subscribed beside it: the working listener's delay, from
   RequestStateChange's return to the indication's arrival, median and max, side by side.

Usage: bench_indications.py CIMVIRTD [--changes N] [--vms N] [--restarts N] [--no-kill]
[--delay-changes N] [--skip-isolation] [--json]. With --json, the reliability figures are
printed as one JSON object instead of tables (the test suite runs a small run so).
"""

import argparse
import http.server
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pywbem
import requests
from pywbem import CIMInstance, Uint16, Uint32, Uint64

from cimvirtd_ports import wait_for_ports

PASSWORD = "bench-password"
QUERY = "SELECT * FROM CIM_InstIndication WHERE SourceInstance ISA KVM_ComputerSystem"
RUNNING, PAUSED = 2, 9
PACE = 0.05  # seconds between the isolation run's changes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """cimvirtd on DATA_DIR; started again on the same directory after a kill."""

    def __init__(self, binary, data_dir):
        self.binary, self.data_dir = binary, Path(data_dir)
        self.start()

    def start(self):
        log_path = self.data_dir / "server.log"
        since = log_path.stat().st_size if log_path.exists() else 0
        self.log = open(log_path, "a")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", str(self.data_dir), "--http", "127.0.0.1:0",
             "--https", "127.0.0.1:0"], stdout=self.log, stderr=subprocess.STDOUT)
        self.port, _ = wait_for_ports(self.proc, log_path, since=since)

    def conn(self, namespace="root/virt"):
        return pywbem.WBEMConnection(f"http://127.0.0.1:{self.port}", ("admin", PASSWORD),
                                     default_namespace=namespace, timeout=60)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


class Listener:
    """pywbem's WBEMListener on a fixed port, stopped and started at will; every arrival is
    kept with its time."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.received = []  # (monotonic time, indication)
        self.listener = None

    def start(self):
        self.listener = pywbem.WBEMListener("127.0.0.1", http_port=self.port)
        self.listener.add_callback(lambda i, host: self.received.append((time.monotonic(), i)))
        self.listener.start()

    def stop(self):
        self.listener.stop()
        self.listener = None

    def records(self):
        """(class, context, number, vm, previous EnabledState, EnabledState) per arrival."""
        return [(i.classname, i["SequenceContext"], i["SequenceNumber"], i["SourceInstance"]["Name"],
                 i["PreviousInstance"]["EnabledState"] if i.get("PreviousInstance") else None,
                 i["SourceInstance"]["EnabledState"]) for _, i in self.received]


class EventSink:
    """A WS-Eventing Push sink: keeps every event body."""

    def __init__(self):
        self.bodies = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                sink.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/sink"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def records(self):
        out = []
        for body in self.bodies:
            body_el = ET.fromstring(body).find("{http://www.w3.org/2003/05/soap-envelope}Body")
            indication = list(body_el)[0]
            fields = {c.tag.split("}")[1]: c for c in indication}
            if "SequenceNumber" not in fields:
                continue  # a heartbeat
            cls = indication.tag.split("}")[1]

            def state(name):
                el = fields.get(name)
                if el is None or not len(el):
                    return None
                props = {c.tag.split("}")[1]: c.text for c in el[0]}
                return props

            source, previous = state("SourceInstance"), state("PreviousInstance")
            out.append((cls, fields["SequenceContext"].text, int(fields["SequenceNumber"].text),
                        source["Name"], int(previous["EnabledState"]) if previous else None,
                        int(source["EnabledState"])))
        return out

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def ws_subscribe(server, url):
    body = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header>'
        "<wsa:Action>http://schemas.xmlsoap.org/ws/2004/08/eventing/Subscribe</wsa:Action>"
        "<wsa:To>http://x/wsman</wsa:To>"
        "<wsman:ResourceURI>http://schemas.dmtf.org/wbem/wscim/1/*</wsman:ResourceURI>"
        "<wsa:MessageID>uuid:bench-subscribe</wsa:MessageID></s:Header><s:Body>"
        '<wse:Subscribe xmlns:wse="http://schemas.xmlsoap.org/ws/2004/08/eventing">'
        '<wse:Delivery Mode="http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Push">'
        f"<wse:NotifyTo><wsa:Address>{url}</wsa:Address></wse:NotifyTo></wse:Delivery>"
        "<wse:Expires>PT86400S</wse:Expires>"
        f'<wsman:Filter Dialect="http://schemas.microsoft.com/wbem/wsman/1/WQL">{QUERY}</wsman:Filter>'
        "</wse:Subscribe></s:Body></s:Envelope>")
    r = requests.post(f"http://127.0.0.1:{server.port}/wsman", data=body, auth=("admin", PASSWORD),
                      headers={"Content-Type": "application/soap+xml;charset=UTF-8"}, timeout=30)
    r.raise_for_status()


def subscribe(server, urls, manager_id):
    manager = pywbem.WBEMSubscriptionManager(subscription_manager_id=manager_id)
    sid = manager.add_server(pywbem.WBEMServer(server.conn("interop")))
    filt = manager.add_filter(sid, "root/virt", QUERY, query_language="WQL", filter_id="vms")
    dests = [manager.add_destination(sid, url, destination_id=f"d{i}").path for i, url in enumerate(urls)]
    manager.add_subscriptions(sid, filt.path, dests)


def set_retry_interval(server, seconds):
    interop = server.conn("interop")
    (svc,) = interop.EnumerateInstances("CIM_IndicationService")
    svc["DeliveryRetryInterval"] = Uint32(seconds)
    interop.ModifyInstance(svc, PropertyList=["DeliveryRetryInterval"])


def service(conn):
    (path,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
    return path


def define_and_start(conn, name):
    vssd = CIMInstance("KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": name})
    mem = CIMInstance("KVM_MemResourceAllocationSettingData",
                      properties={"ResourceType": Uint16(4), "VirtualQuantity": Uint64(16),
                                  "AllocationUnits": "byte*2^20"})
    system = conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd,
                               ResourceSettings=[mem])[1]["ResultingSystem"]
    request_state(conn, system, RUNNING)
    return system


def request_state(conn, system, state):
    rv, out = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(state))
    if rv == 4096:
        while conn.GetInstance(out["Job"])["JobState"] not in (7, 8, 10):
            time.sleep(0.01)
    return rv


def destroy_all(server):
    """Destroys the run's VMs: their processes would outlive the server (it re-adopts them)
    and keep spending the CPUs."""
    conn = server.conn()
    for system in conn.EnumerateInstanceNames("KVM_ComputerSystem"):
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)


def new_server(binary):
    data = Path(tempfile.mkdtemp(prefix="bench-indications-"))
    subprocess.run([binary, "user", "add", "admin", "--access", "read-write", "--data-dir", str(data)],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    return Server(binary, data), data


def check(records):
    """What a receiver's records show: counts of indications, lost, out of order,
    duplicates, and transitions reported again after the kill."""
    seen, duplicates = set(), 0
    unique = []
    for r in records:
        key = (r[1], r[2])
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        unique.append(r)
    # Within a context each number is the one after the last: a gap or a swap breaks it.
    out_of_order = 0
    expected = {}
    for _, context, number, *_ in unique:
        if context in expected and number != expected[context]:
            out_of_order += 1
        expected[context] = number + 1
    # Per VM, each change's PreviousInstance is the state the change before reported.
    lost, repeated, last, last_change = 0, 0, {}, {}
    for cls, _, _, vm, previous, state in unique:
        if not cls.endswith("ModifiedIndication"):
            last[vm] = state
            continue
        if vm in last and previous != last[vm]:
            if (previous, state) == last_change.get(vm):
                repeated += 1  # the kill fell between queuing a change and recording it
            else:
                lost += 1
        last[vm] = state
        last_change[vm] = (previous, state)
    return {"indications": len(records), "unique": len(unique), "lost": lost,
            "out_of_order": out_of_order, "duplicates": duplicates, "reported_again": repeated,
            "contexts": len({r[1] for r in unique})}


def reliability(binary, changes, vms, restarts, kill):
    server, data = new_server(binary)
    holder = {"server": server}
    listener, sink = Listener(), EventSink()
    listener.start()
    try:
        set_retry_interval(server, 1)
        subscribe(server, [listener.url], "bench")
        ws_subscribe(server, sink.url)
        conn = server.conn()
        systems = [define_and_start(conn, f"bench{i}") for i in range(vms)]
        done = threading.Event()
        acknowledged = [0] * vms

        def work(i):
            c = holder["server"].conn()
            port = holder["server"].port
            for n in range(changes // vms):
                state = PAUSED if n % 2 == 0 else RUNNING
                while True:
                    try:
                        if holder["server"].port != port:
                            c, port = holder["server"].conn(), holder["server"].port
                        request_state(c, systems[i], state)
                        acknowledged[i] += 1
                        break
                    except (pywbem.ConnectionError, pywbem.TimeoutError, pywbem.HTTPError):
                        time.sleep(0.1)  # the server is being restarted
                    except pywbem.CIMError:
                        break  # the change happened before the kill; asking again is refused

        workers = [threading.Thread(target=work, args=(i,)) for i in range(vms)]
        started = time.monotonic()
        for w in workers:
            w.start()

        outage = threading.Lock()  # one listener outage at a time

        def listener_outage():
            with outage:
                listener.stop()
                time.sleep(random.uniform(0.5, 2.0))  # up to twice the retry interval
                listener.start()

        outages = []

        def disturb():
            # At points of the run's progress (changes acknowledged), not of time.
            points = [random.uniform(0.05, 0.9) for _ in range(restarts)]
            events = sorted([(p, "listener") for p in points] + ([(0.5, "kill")] if kill else []))
            for at, what in events:
                while sum(acknowledged) < at * changes and not done.is_set():
                    time.sleep(0.01)
                print(f"{time.monotonic() - started:.1f} s, {sum(acknowledged)} changes: {what}",
                      file=sys.stderr)
                if what == "listener":
                    outages.append(threading.Thread(target=listener_outage))
                    outages[-1].start()
                else:
                    holder["server"].kill()
                    holder["server"].start()

        disturber = threading.Thread(target=disturb)
        disturber.start()
        for w in workers:
            w.join()
        elapsed = time.monotonic() - started
        done.set()
        disturber.join()
        for o in outages:
            o.join()
        # Everything queued arrives; then nothing more.
        quiet_since, count = time.monotonic(), -1
        while time.monotonic() - quiet_since < 5:
            now = len(listener.received) + len(sink.bodies)
            if now != count:
                count, quiet_since = now, time.monotonic()
            time.sleep(0.2)
        if os.environ.get("BENCH_DUMP"):
            Path(os.environ["BENCH_DUMP"]).write_text(json.dumps(
                {"acknowledged": acknowledged, "pywbem": listener.records(), "wsman": sink.records(),
                 "log": (data / "server.log").read_text()}))
        results = {"changes": sum(acknowledged), "vms": vms, "seconds": round(elapsed, 1),
                   "listener_restarts": restarts, "killed": kill,
                   "pywbem": check(listener.records()), "wsman": check(sink.records())}
        return results
    finally:
        if listener.listener:
            listener.stop()
        sink.close()
        destroy_all(holder["server"])
        holder["server"].stop()
        shutil.rmtree(data, ignore_errors=True)


class SilentListener:
    """Accepts connections and never answers (the test suite uses it too)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def delays(binary, changes, with_bad):
    server, data = new_server(binary)
    listener = Listener()
    listener.start()
    silent = SilentListener()
    try:
        urls = [listener.url]
        if with_bad:
            urls = [f"http://127.0.0.1:{free_port()}", silent.url] + urls
        subscribe(server, urls, "delays")
        conn = server.conn()
        system = define_and_start(conn, "delayed")
        time.sleep(0.5)
        base = len(listener.received)
        acks = []
        for n in range(changes):
            request_state(conn, system, PAUSED if n % 2 == 0 else RUNNING)
            acks.append(time.monotonic())
            # Paced below what pywbem's listener takes (about 10 ms per indication here),
            # so that the delay is the path's, not a queue's behind a saturated listener.
            time.sleep(PACE)
        deadline = time.monotonic() + 120
        while len(listener.received) - base < changes and time.monotonic() < deadline:
            time.sleep(0.05)
        arrivals = [t for t, _ in listener.received[base:]]
        if len(arrivals) < changes:
            raise RuntimeError(f"{len(arrivals)} of {changes} indications arrived")
        ms = [(a - b) * 1000 for a, b in zip(arrivals, acks)]
        return statistics.median(ms), max(ms)
    finally:
        listener.stop()
        silent.close()
        destroy_all(server)
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cimvirtd")
    p.add_argument("--changes", type=int, default=10000)
    p.add_argument("--vms", type=int, default=4)
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--no-kill", action="store_true")
    p.add_argument("--delay-changes", type=int, default=200)
    p.add_argument("--skip-isolation", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    r = reliability(a.cimvirtd, a.changes, a.vms, a.restarts, not a.no_kill)
    if a.json:
        print(json.dumps(r))
        return
    print(f"Reliability: {r['changes']} state changes on {r['vms']} VMs in {r['seconds']} s, "
          f"the listener stopped {r['listener_restarts']} times, cimvirtd "
          f"{'killed (SIGKILL) and restarted once' if r['killed'] else 'not killed'}; "
          f"{os.cpu_count()} CPUs")
    print()
    print("| Receiver | indications | contexts | lost | gaps or out of order | duplicates (same number) | reported again after the kill |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, key in (("pywbem WBEMListener (CIM-XML)", "pywbem"), ("WS-Eventing sink (Push)", "wsman")):
        c = r[key]
        print(f"| {name} | {c['unique']} | {c['contexts']} | {c['lost']} | {c['out_of_order']} | "
              f"{c['duplicates']} | {c['reported_again']} |")
    print()
    if a.skip_isolation:
        return
    alone = delays(a.cimvirtd, a.delay_changes, False)
    beside = delays(a.cimvirtd, a.delay_changes, True)
    print(f"Isolation: a working pywbem listener's delay over {a.delay_changes} pause/resume "
          f"changes {PACE * 1000:.0f} ms apart, from RequestStateChange's return to the "
          "indication's arrival (ms)")
    print()
    print("| Destinations | median | max |")
    print("|---|---:|---:|")
    print(f"| the working listener alone | {alone[0]:.1f} | {alone[1]:.1f} |")
    print(f"| beside one refusing and one silent listener | {beside[0]:.1f} | {beside[1]:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
