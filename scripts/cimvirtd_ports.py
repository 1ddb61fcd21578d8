"""Waiting for a cimvirtd started with `--http 127.0.0.1:0 --https 127.0.0.1:0` and reading
from its log the ports it bound.

Port 0 lets the kernel choose the ports as the server binds them; a port chosen beforehand
(bind to 0, close, pass the number) can be taken by another process in between, which made
parallel tests fail now and then with "Address already in use"."""

import re
import time

READY = "cimvirtd ready"
# The line in the text log format (scheme=Http addr=127.0.0.1:PORT) and in JSON
# ("scheme":"Http","addr":"127.0.0.1:PORT").
_LISTENING = re.compile(r'listening .*scheme(?:=|":")(Https?)(?: |",")addr(?:=|":")[^\s"]*:(\d+)')


def wait_for_ports(proc, log_path, since=0, timeout=60):
    """Waits for the `cimvirtd ready` line that `proc` writes to `log_path` after byte offset
    `since` (a log appended by each start) and returns its (http_port, https_port), None for
    a listener it does not have. Raises RuntimeError with the log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        with open(log_path, "rb") as f:
            f.seek(since)
            log = f.read().decode(errors="replace")
        if READY in log:
            ports = dict(_LISTENING.findall(log))
            return (int(ports["Http"]) if "Http" in ports else None,
                    int(ports["Https"]) if "Https" in ports else None)
        if proc.poll() is not None:
            raise RuntimeError(f"cimvirtd exited with {proc.returncode}: {log[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"cimvirtd did not start in {timeout} s: {log[-4000:]}")
        time.sleep(0.05)
