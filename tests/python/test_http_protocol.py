"""DSP0200 protocol error paths with raw HTTP requests, and the configured limits."""

import base64
import socket
import ssl
import time
import urllib.parse

import pywbem

import pytest

from conftest import ADMIN, Server

AUTH = "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()

ENUM_CLASS_NAMES = (
    '<?xml version="1.0" encoding="utf-8" ?>'
    '<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0">'
    '<SIMPLEREQ><IMETHODCALL NAME="EnumerateClassNames"><LOCALNAMESPACEPATH>'
    '<NAMESPACE NAME="root"/><NAMESPACE NAME="virt"/></LOCALNAMESPACEPATH>'
    '</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')


def headers_for(body, **over):
    h = {
        "Host": "127.0.0.1",
        "Content-Type": 'application/xml; charset="utf-8"',
        "Content-Length": str(len(body.encode())),
        "CIMOperation": "MethodCall",
        "CIMMethod": "EnumerateClassNames",
        "CIMObject": "root%2Fvirt",
        "Authorization": AUTH,
    }
    for k, v in over.items():
        k = k.replace("_", "-")
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    return h


class Reply:
    def __init__(self, raw):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()


def connect(port, tls=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    if tls:
        ctx = ssl.create_default_context(cafile=tls)
        s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    return s


def read_reply(s):
    """Reads one response (Content-Length or chunked) from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return Reply(data) if data else None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    reply = Reply(head + b"\r\n\r\n")
    if "content-length" in reply.headers:
        n = int(reply.headers["content-length"])
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        reply.body = rest[:n]
    elif reply.headers.get("transfer-encoding") == "chunked":
        body, trailers = b"", {}
        while True:
            while b"\r\n" not in rest:
                rest += s.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while not rest.endswith(b"\r\n") or (rest != b"\r\n" and not rest.endswith(b"\r\n\r\n")):
                    rest += s.recv(65536)
                for line in rest.decode().split("\r\n"):
                    if ":" in line:
                        k, _, v = line.partition(":")
                        trailers[k.strip().lower()] = v.strip()
                break
            while len(rest) < size + 2:
                rest += s.recv(65536)
            body += rest[:size]
            rest = rest[size + 2:]
        reply.body = body
        reply.trailers = trailers
    return reply


def request(port, body=ENUM_CLASS_NAMES, method="POST", path="/cimom", tls=None, **over):
    s = connect(port, tls)
    try:
        h = headers_for(body, **over)
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        s.sendall(head.encode() + b"\r\n" + body.encode())
        return read_reply(s)
    finally:
        s.close()


def test_a_valid_request_works_over_both_schemes(server):
    r = request(server.http_port)
    assert r.status == 200 and r.headers["cimoperation"] == "MethodResponse"
    assert b'<CLASSNAME NAME="CIM_ManagedElement"/>' in r.body
    r = request(server.https_port, tls=server.cert)
    assert r.status == 200 and b"CIM_ManagedElement" in r.body


def test_authentication_is_required(server):
    r = request(server.http_port, Authorization=None)
    assert r.status == 401 and r.headers["www-authenticate"] == 'Basic realm="cimvirt"'
    r = request(server.http_port, Authorization="Basic " + base64.b64encode(b"admin:x").decode())
    assert r.status == 401


@pytest.mark.parametrize("over,status,cimerror", [
    ({"Content_Type": "application/json"}, 400, "request-not-valid"),
    ({"Content_Type": "text/xml; charset=latin1"}, 400, "request-not-valid"),
    ({"CIMOperation": "Bogus"}, 400, "unsupported-operation"),
    ({"CIMOperation": None}, 400, "unsupported-operation"),
    ({"CIMMethod": "GetClass"}, 400, "header-mismatch"),
    ({"CIMMethod": None}, 400, "header-mismatch"),
    ({"CIMObject": "root/cimv2"}, 400, "header-mismatch"),
    ({"CIMObject": None}, 400, "header-mismatch"),
    ({"CIMProtocolVersion": "2.0"}, 501, "unsupported-protocol-version"),
    ({"CIMProtocolVersion": "1.1"}, 400, "header-mismatch"),
    ({"CIMBatch": "CIMBatch"}, 501, "multiple-requests-unsupported"),
])
def test_header_faults(server, over, status, cimerror):
    r = request(server.http_port, **over)
    assert (r.status, r.headers.get("cimerror")) == (status, cimerror)
    assert "pgerrordetail" in r.headers


@pytest.mark.parametrize("body,status,cimerror", [
    ("<CIM><MESSAGE>", 400, "request-not-well-formed"),
    ("not xml at all", 400, "request-not-well-formed"),
    (ENUM_CLASS_NAMES.replace('CIMVERSION="2.0"', 'CIMVERSION="3.0"'), 501, "unsupported-cim-version"),
    (ENUM_CLASS_NAMES.replace('DTDVERSION="2.0"', 'DTDVERSION="9.1"'), 501, "unsupported-dtd-version"),
    (ENUM_CLASS_NAMES.replace('PROTOCOLVERSION="1.0"', 'PROTOCOLVERSION="2.0"'), 501, "unsupported-protocol-version"),
    (ENUM_CLASS_NAMES.replace("SIMPLEREQ", "MULTIREQ"), 501, "multiple-requests-unsupported"),
    (ENUM_CLASS_NAMES.replace("<CIM ", "<XIM ").replace("</CIM>", "</XIM>"), 400, "request-not-valid"),
    (ENUM_CLASS_NAMES.replace('<?xml version="1.0" encoding="utf-8" ?>', "<?xml ?>"), 400, "request-not-well-formed"),
    # As OpenPegasus answers them: a boolean parameter without a value, a class name that is
    # not an identifier.
    (ENUM_CLASS_NAMES.replace("</LOCALNAMESPACEPATH>", '</LOCALNAMESPACEPATH><IPARAMVALUE NAME="DeepInheritance"/>'),
     400, "request-not-valid"),
    (ENUM_CLASS_NAMES.replace("</LOCALNAMESPACEPATH>",
                              '</LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName"><CLASSNAME NAME=""/></IPARAMVALUE>'),
     400, "request-not-valid"),
    # The "billion laughs": refused at the DOCTYPE, before any entity is expanded.
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
     '<CIM CIMVERSION="2.0" DTDVERSION="2.0">&lol2;</CIM>', 400, "request-not-valid"),
])
def test_body_faults(server, body, status, cimerror):
    r = request(server.http_port, body=body)
    assert (r.status, r.headers.get("cimerror")) == (status, cimerror), r.body


def test_parameter_faults_are_cim_errors(server):
    body = ENUM_CLASS_NAMES.replace(
        "</LOCALNAMESPACEPATH>", '</LOCALNAMESPACEPATH><IPARAMVALUE NAME="Bogus"><VALUE>x</VALUE></IPARAMVALUE>')
    r = request(server.http_port, body=body)
    assert r.status == 200 and b'<ERROR CODE="4"' in r.body and b"Bogus" in r.body
    body = ENUM_CLASS_NAMES.replace('NAME="virt"', 'NAME="nowhere"')
    r = request(server.http_port, body=body, CIMObject="root/nowhere")
    assert r.status == 200 and b'<ERROR CODE="3"' in r.body
    body = ENUM_CLASS_NAMES.replace("EnumerateClassNames", "FrobnicateClasses")
    r = request(server.http_port, body=body, CIMMethod="FrobnicateClasses")
    assert r.status == 200 and b'<ERROR CODE="7"' in r.body


def test_methods_and_paths(server):
    for method in ("GET", "PUT", "FROB"):
        r = request(server.http_port, method=method)
        assert r.status == 501 and b"POST" in r.body
    r = request(server.http_port, path="/elsewhere")
    assert r.status == 404


def test_transfer_codings_other_than_chunked(server):
    """A coding the server does not implement gets 501 (RFC 9112 6.1); chunked not last
    gets 400, as the body's length is unknown (RFC 9112 6.3)."""
    body = ENUM_CLASS_NAMES.encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    for coding, status in (("gzip, chunked", 501), ("gzip", 400)):
        s = connect(server.http_port)
        try:
            h = headers_for("", Content_Length=None, Transfer_Encoding=coding)
            s.sendall(("POST /cimom HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
                       + "\r\n").encode() + chunked)
            assert read_reply(s).status == status, coding
        finally:
            s.close()


def test_mpost_with_man_header(server):
    r = request(server.http_port, method="M-POST", CIMOperation=None, CIMMethod=None, CIMObject=None,
                Man="http://www.dmtf.org/cim/mapping/http/v1.0; ns=73",
                **{"73-CIMOperation": "MethodCall", "73-CIMMethod": "EnumerateClassNames",
                   "73-CIMObject": "root/virt"})
    assert r.status == 200 and r.headers["73-cimoperation"] == "MethodResponse" and "ext" in r.headers
    r = request(server.http_port, method="M-POST")
    assert r.status == 400


def test_keep_alive_serves_several_requests(server):
    s = connect(server.http_port)
    try:
        for _ in range(3):
            h = headers_for(ENUM_CLASS_NAMES)
            s.sendall(("POST /cimom HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
                       + "\r\n" + ENUM_CLASS_NAMES).encode())
            assert read_reply(s).status == 200
    finally:
        s.close()


def test_large_results_stream_in_chunks(server):
    conn = server.conn()
    for i in range(400):
        conn.CreateInstance(__import__("pywbem").CIMInstance(
            "CIM_RegisteredProfile", {"InstanceID": f"stream-{i:04}", "RegisteredName": "x" * 100}))
    body = ENUM_CLASS_NAMES.replace("EnumerateClassNames", "EnumerateInstances").replace(
        "</LOCALNAMESPACEPATH>",
        '</LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="CIM_RegisteredProfile"/></IPARAMVALUE>')
    r = request(server.http_port, body=body, CIMMethod="EnumerateInstances", TE="trailers")
    assert r.status == 200 and r.headers.get("transfer-encoding") == "chunked"
    assert r.headers.get("trailer") == "CIMStatusCode, CIMStatusCodeDescription"
    assert r.body.count(b"<VALUE.NAMEDINSTANCE>") == 400 and r.body.endswith(b"</CIM>\n")
    assert len(conn.EnumerateInstances("CIM_RegisteredProfile")) == 400


# --- limits, with a server configured by a TOML file -----------------------------------

@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    data = tmp_path_factory.mktemp("limited")
    config = data / "cimvirtd.toml"
    config.write_text(
        "[limits]\nmax_request_bytes = 200000\nmax_xml_depth = 20\nmax_connections = 4\n"
        "header_read_timeout_secs = 1\nbody_read_timeout_secs = 1\nrequest_timeout_secs = 2\n"
        "[log]\nformat = \"json\"\n")
    srv = Server(data, extra_args=["--config", str(config)])
    yield srv
    code, log = srv.stop()
    assert code == 0, log
    assert '"message":"stopped"' in log.replace(" ", "")


def test_oversize_bodies_get_413(limited):
    big = ENUM_CLASS_NAMES.replace("</CIM>", "<!--" + "x" * 300000 + "--></CIM>")
    r = request(limited.http_port, body=big)
    assert r.status == 413
    # Chunked, so the size is only known while reading.
    s = connect(limited.http_port)
    try:
        h = headers_for("", Content_Length=None, Transfer_Encoding="chunked")
        s.sendall(("POST /cimom HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode())
        for _ in range(30):
            s.sendall(b"2000\r\n" + b"x" * 0x2000 + b"\r\n")
        assert read_reply(s).status == 413
    finally:
        s.close()


def test_deep_xml_is_refused(limited):
    deep = ENUM_CLASS_NAMES.replace("</IMETHODCALL>", "<X>" * 30 + "</X>" * 30 + "</IMETHODCALL>")
    r = request(limited.http_port, body=deep)
    assert r.status == 400 and r.headers["cimerror"] == "request-not-valid"
    assert "nested deeper" in r.body.decode()


def test_an_element_with_thousands_of_attributes_is_refused_at_once(server):
    """Duplicate attributes are found by comparing each with those before it: without a
    limit on their number, one 3 MB tag kept a worker busy for minutes."""
    attrs = " ".join(f'a{i}=""' for i in range(300000))
    body = ENUM_CLASS_NAMES.replace('<IMETHODCALL NAME="EnumerateClassNames"',
                                    f'<IMETHODCALL NAME="EnumerateClassNames" {attrs}')
    r = request(server.http_port, body=body)
    assert r.status == 400 and r.headers["cimerror"] == "request-not-valid"
    assert "XML element IMETHODCALL has more attributes than the limit of 64" in r.body.decode()
    assert request(server.http_port).status == 200


@pytest.mark.parametrize("count", [3, 45000])
def test_names_given_twice_are_found_in_short_and_long_lists(server, count):
    """Parameters and key bindings by the tens of thousands: a name given twice is found
    by sorting (pairwise comparison had one such request take 10 s of a worker)."""
    def get_instance(names):
        keys = "".join(f'<KEYBINDING NAME="{n}"><KEYVALUE>x</KEYVALUE></KEYBINDING>'
                       for n in names)
        body = ENUM_CLASS_NAMES.replace("EnumerateClassNames", "GetInstance").replace(
            "</LOCALNAMESPACEPATH>",
            '</LOCALNAMESPACEPATH><IPARAMVALUE NAME="InstanceName">'
            f'<INSTANCENAME CLASSNAME="KVM_ComputerSystem">{keys}</INSTANCENAME></IPARAMVALUE>')
        return request(server.http_port, body=body, CIMMethod="GetInstance").body.decode()

    names = [f"K{i}" for i in range(count)]
    assert 'ERROR CODE="4" DESCRIPTION="key k1 is given twice"' in get_instance(names + ["k1"])
    assert "'K0' is not a key of class KVM_ComputerSystem" in get_instance(names)
    params = "".join(f'<IPARAMVALUE NAME="P{i}"/>' for i in range(count)) + '<IPARAMVALUE NAME="p2"/>'
    body = ENUM_CLASS_NAMES.replace("</LOCALNAMESPACEPATH>", "</LOCALNAMESPACEPATH>" + params)
    reply = request(server.http_port, body=body).body.decode()
    assert 'ERROR CODE="4" DESCRIPTION="parameter p2 is given twice"' in reply, reply


def test_slow_clients_are_cut_off(limited):
    s = connect(limited.http_port)
    try:
        s.sendall(b"POST /cimom HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        started = time.monotonic()
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        # Closed after the 1 s header timeout, at most with a 408 first.
        assert time.monotonic() - started < 10
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
    finally:
        s.close()
    s = connect(limited.http_port)
    try:
        h = headers_for(ENUM_CLASS_NAMES)
        s.sendall(("POST /cimom HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode())
        s.sendall(ENUM_CLASS_NAMES[:50].encode())  # body never finishes
        r = read_reply(s)
        assert r.status == 408
    finally:
        s.close()
    assert request(limited.http_port).status == 200


def test_a_full_table_of_idle_connections_makes_room(limited):
    """With every slot held by an idle connection, a new client is still served: the
    connection idle the longest is closed to make room."""
    time.sleep(1.5)  # connections of earlier tests end within the 1 s header timeout
    held = [connect(limited.http_port) for _ in range(4)]
    try:
        time.sleep(0.5)  # connections that opened an instant ago are not closed for room
        assert request(limited.http_port).status == 200
        held[0].settimeout(5)
        assert held[0].recv(1) == b"", "the longest idle connection was closed"
    finally:
        for s in held:
            s.close()


def test_an_error_after_streaming_started_arrives_in_trailers(limited):
    """A client that stops reading makes the response outlast the 2 s operation limit:
    the server cannot send an ERROR element any more, so it ends the chunked body with the
    CIMStatusCode and CIMStatusCodeDescription trailers (DSP0200 chunking)."""
    conn = limited.conn()
    conn.CreateClass(pywbem.CIMClass(
        "Test_Bulky", superclass="CIM_ManagedElement",
        properties=[pywbem.CIMProperty("Id", None, type="string", qualifiers={"Key": True})]))
    # 25 MB: more than the kernel's socket buffers on both sides can hold.
    for i in range(400):
        conn.CreateInstance(pywbem.CIMInstance("Test_Bulky", {"Id": f"b{i:04}", "Description": "z" * 64000}))
    body = ENUM_CLASS_NAMES.replace("EnumerateClassNames", "EnumerateInstances").replace(
        "</LOCALNAMESPACEPATH>",
        '</LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="Test_Bulky"/></IPARAMVALUE>')
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", limited.http_port))
    s.settimeout(20)
    try:
        h = headers_for(body, CIMMethod="EnumerateInstances", TE="trailers")
        s.sendall(("POST /cimom HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
                   + "\r\n" + body).encode())
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        time.sleep(3)
        reply = read_reply_after(s, first)
    finally:
        s.close()
    assert reply.headers.get("transfer-encoding") == "chunked"
    assert reply.trailers.get("cimstatuscode") == "1", (reply.trailers, len(reply.body), reply.body[-200:])
    assert "request_timeout_secs" in urllib.parse.unquote(reply.trailers["cimstatuscodedescription"])
    assert not reply.body.endswith(b"</CIM>\n")
    assert request(limited.http_port).status == 200


def read_reply_after(s, already):
    """read_reply for a socket whose first bytes were already read."""
    class Prefixed:
        def __init__(self):
            self.pending = already

        def recv(self, n):
            if self.pending:
                data, self.pending = self.pending, b""
                return data
            return s.recv(n)
    return read_reply(Prefixed())
