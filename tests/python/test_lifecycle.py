"""Start-up defaults, the user commands, durability across restarts and clean SIGTERM."""

import stat
import subprocess

import pytest
import pywbem
from pywbem import CIMClass, CIMInstance, CIMProperty

from conftest import BINARY, Server, cimvirtd


def test_first_start_creates_admin_certificate_and_database(tmp_path):
    srv = Server(tmp_path / "data", users=False)
    try:
        secret = srv.data_dir / "initial-admin-password"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        password = secret.read_text().strip()
        assert len(password) >= 20
        assert stat.S_IMODE((srv.data_dir / "tls" / "key.pem").stat().st_mode) == 0o600
        log = srv.log_path.read_text()
        assert "initial-admin-password" in log and "fingerprint" in log
        conn = srv.conn("https", creds=("admin", password))
        assert "CIM_ManagedElement" in conn.EnumerateClassNames()
        # The database belongs to the running server.
        r = cimvirtd("user", "list", "--data-dir", str(srv.data_dir), check=False)
        assert r.returncode != 0 and "stop cimvirtd first" in r.stderr
    finally:
        code, log = srv.stop()
    assert code == 0, log
    listed = cimvirtd("user", "list", "--data-dir", str(srv.data_dir)).stdout
    assert listed.startswith("admin\t*=read-write")


def test_user_commands(tmp_path):
    d = str(tmp_path)
    out = cimvirtd("user", "add", "ops", "--access", "read-only", "--namespace", "root/virt",
                   "--data-dir", d, stdin="ops-password\n").stdout
    assert out == "user ops saved: root/virt=read-only\n"
    assert "ops\troot/virt=read-only" in cimvirtd("user", "list", "--data-dir", d).stdout
    # Read-only everywhere unless more is asked for.
    out = cimvirtd("user", "add", "viewer", "--data-dir", d, stdin="viewer-password\n").stdout
    assert out == "user viewer saved: *=read-only\n"
    r = cimvirtd("user", "add", "bad:name", "--data-dir", d, stdin="a long password\n", check=False)
    assert r.returncode != 0 and "not a valid user name" in r.stderr
    for short in ("", "pw", "elevenchars"):
        r = cimvirtd("user", "add", "short", "--data-dir", d, stdin=short + "\n", check=False)
        assert r.returncode != 0 and "at least 12 characters" in r.stderr
    assert "at least 12 characters" in cimvirtd("user", "add", "--help").stdout
    cimvirtd("user", "del", "ops", "--data-dir", d)
    r = cimvirtd("user", "del", "ops", "--data-dir", d, check=False)
    assert r.returncode != 0 and "no user named ops" in r.stderr


def test_namespace_rights(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    cimvirtd("user", "add", "virtonly", "--access", "read-write", "--namespace", "root/virt",
             "--data-dir", str(d), stdin="virt-only-password\n")
    srv = Server(d, users=False)
    try:
        conn = srv.conn(creds=("virtonly", "virt-only-password"))
        assert conn.EnumerateClassNames()
        with pytest.raises(pywbem.CIMError) as e:
            conn.EnumerateClassNames(namespace="interop")
        assert e.value.status_code == pywbem.CIM_ERR_ACCESS_DENIED
    finally:
        assert srv.stop()[0] == 0


def test_state_survives_restart(tmp_path):
    data = tmp_path / "data"
    srv = Server(data)
    try:
        conn = srv.conn()
        pywbem.WBEMServer(conn).create_namespace("root/kept")
        conn.SetQualifier(pywbem.CIMQualifierDeclaration(
            "Durable", "string", scopes={"CLASS": True}, value="q"))
        conn.CreateClass(CIMClass("Test_Durable", superclass="CIM_ManagedElement",
                                  qualifiers={"Durable": "yes"},
                                  properties=[CIMProperty("Id", None, type="string",
                                                          qualifiers={"Key": True})]))
        conn.CreateClass(CIMClass("Test_MoreDurable", superclass="Test_Durable"))
        for i in range(3):
            conn.CreateInstance(CIMInstance("Test_MoreDurable", {"Id": f"d{i}", "Caption": "kept"}))
        # String keys are case-sensitive: these are two instances.
        conn.CreateInstance(CIMInstance("Test_MoreDurable", {"Id": "D0", "Caption": "kept"}))
        conn.DeleteInstance(pywbem.CIMInstanceName("Test_MoreDurable", {"Id": "d1"}, namespace="root/virt"))
    finally:
        code, log = srv.stop()
    assert code == 0, log
    again = Server(data, users=False)
    try:
        conn = again.conn()
        assert "root/kept" in pywbem.WBEMServer(conn).namespaces
        assert conn.GetQualifier("Durable").value == "q"
        assert conn.GetClass("Test_MoreDurable", LocalOnly=False).properties["Id"].qualifiers["Key"].value
        insts = conn.EnumerateInstances("Test_Durable")
        assert sorted(i["Id"] for i in insts) == ["D0", "d0", "d2"]
        assert all(i["Caption"] == "kept" for i in insts)
    finally:
        assert again.stop()[0] == 0


def test_bad_configuration_is_reported(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[limits]\nmax_request_byte = 1\n")
    r = cimvirtd("serve", "--config", str(config), "--data-dir", str(tmp_path), check=False)
    assert r.returncode == 2 and "unknown field `max_request_byte`" in r.stderr
    r = cimvirtd("serve", "--data-dir", str(tmp_path), "--https", "127.0.0.1:1", "--no-http",
                 "--http", "127.0.0.1:2", check=False)
    assert r.returncode != 0


def test_classes_replay_in_order_after_deletions(tmp_path):
    """Stored classes replay by creation number; numbers must keep growing across restarts
    even when classes were deleted, or a new subclass could replay before its superclass."""
    data = tmp_path / "data"

    def key_class(name, superclass=None):
        props = [] if superclass else [CIMProperty("Id", None, type="string", qualifiers={"Key": True})]
        return CIMClass(name, superclass=superclass, properties=props)

    srv = Server(data)
    try:
        conn = srv.conn()
        conn.CreateClass(key_class("Test_Base"))
        conn.CreateClass(key_class("Test_Zap"))
        conn.CreateClass(key_class("Test_Mid", "Test_Base"))
        conn.DeleteClass("Test_Zap")
    finally:
        assert srv.stop()[0] == 0
    srv = Server(data, users=False)
    try:
        # Sorts before Test_Mid by name: only its creation number puts it after.
        srv.conn().CreateClass(key_class("Test_Aaa", "Test_Mid"))
    finally:
        assert srv.stop()[0] == 0
    srv = Server(data, users=False)
    try:
        conn = srv.conn()
        assert conn.GetClass("Test_Aaa").superclass == "Test_Mid"
        assert "not loaded" not in srv.log_path.read_text()
    finally:
        assert srv.stop()[0] == 0


def test_a_run_directory_too_long_for_vm_sockets_is_refused_at_start(tmp_path):
    """VM control sockets are RUN_DIR/UUID.sock and a Unix socket path has at most 107
    bytes: a run directory that leaves no room for them stops the start, saying why."""
    long_dir = tmp_path / ("r" * (100 - len(str(tmp_path))))
    r = subprocess.run([str(BINARY), "serve", "--data-dir", str(tmp_path / "data"),
                        "--run-dir", str(long_dir), "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "run_dir is too long for VM control sockets" in r.stderr + r.stdout
