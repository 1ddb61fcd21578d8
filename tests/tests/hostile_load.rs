//! Hostile load over raw sockets against a real cimvirtd: half-closed requests, a 401 and
//! its retry on the same connection, large anonymous bodies, idle sockets by the thousand,
//! a wrong-password flood and a valid-credential stampede through cache expiries.
//!
//! Each test asserts behaviour (answered, refused, bounded), never timings; memory and
//! threads are read from /proc while the flood runs. `scripts/bench-floods` measures the
//! same floods and prints the figures.

use std::io::Write as _;
use std::net::{IpAddr, Shutdown};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cimvirt_tests::raw_http::{
    basic, cimxml_request, connect, connect_from, exchange, read_response, ENUM_CLASS_NAMES,
};
use cimvirt_tests::server::{ProcStatus, Sampler, TestServer, ADMIN, OPERATOR};

/// What a flood may add to the server's resident memory (the issue's bound).
const MAX_GROWTH_MIB: f64 = 64.0;
/// Threads a flood may add: none are started per request, but the runtime may start a
/// blocking thread or two for its own work.
const MAX_EXTRA_THREADS: u32 = 4;

/// Fails unless a flood took the server from `base` to at most [`MAX_GROWTH_MIB`] more
/// resident memory and [`MAX_EXTRA_THREADS`] more threads at its `peak`.
fn assert_bounded(base: ProcStatus, peak: ProcStatus) {
    assert!(
        peak.rss_mib - base.rss_mib <= MAX_GROWTH_MIB,
        "RSS went from {:.1} to {:.1} MiB",
        base.rss_mib,
        peak.rss_mib
    );
    assert!(
        peak.threads <= base.threads + MAX_EXTRA_THREADS,
        "threads went from {} to {}",
        base.threads,
        peak.threads
    );
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn stop_cleanly(server: TestServer) {
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains("the database is still referenced"),
        "the database is closed cleanly: {log}"
    );
}

const IDENTIFY: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" "#,
    r#"xmlns:wsmid="http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd">"#,
    r#"<s:Header/><s:Body><wsmid:Identify/></s:Body></s:Envelope>"#
);

fn wsman_request(path: &str, body: &[u8], credentials: Option<(&str, &str)>) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/soap+xml;charset=UTF-8\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if let Some(c) = credentials {
        head.push_str(&format!("Authorization: {}\r\n", basic(c)));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

#[test]
fn half_closed_requests_are_answered() {
    let server = TestServer::start("");
    for _ in 0..20 {
        let mut s = connect(server.http_port);
        s.write_all(&cimxml_request(ENUM_CLASS_NAMES, Some(ADMIN)))
            .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let r = read_response(&mut s).expect("a half-closed request is answered");
        assert_eq!(r.status, 200);
        assert!(
            String::from_utf8_lossy(&r.body).contains("<CLASSNAME NAME=\"CIM_ManagedElement\"/>")
        );
    }
    // A body cut short by the end of the connection is refused at once with 400, not
    // left to the body timeout (which answers 408).
    let mut s = connect(server.http_port);
    let request = cimxml_request(ENUM_CLASS_NAMES, Some(ADMIN));
    s.write_all(&request[..request.len() - 30]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let r = read_response(&mut s).expect("a truncated body is answered");
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.closes());
    stop_cleanly(server);
}

#[test]
fn a_refused_request_leaves_its_connection_open_for_the_retry() {
    let server = TestServer::start("[limits]\nmax_request_bytes = 1048576\n");
    let big = ENUM_CLASS_NAMES.replace(
        "</CIM>",
        &format!("<!--{}--></CIM>", "x".repeat(100 * 1024)),
    );
    // CIM-XML, as wbemexec does it: the whole request, 401, the same again with credentials.
    let mut s = connect(server.http_port);
    s.write_all(&cimxml_request(&big, None)).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 401);
    assert!(!r.closes(), "the body was read, the connection stays");
    s.write_all(&cimxml_request(&big, Some(ADMIN))).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    // Wrong credentials, then right ones.
    s.write_all(&cimxml_request(&big, Some(("admin", "not the password"))))
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 401);
    s.write_all(&cimxml_request(&big, Some(ADMIN))).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    // WS-Management alike.
    let padded = IDENTIFY.replace(
        "<s:Header/>",
        &format!("<s:Header/>{}", " ".repeat(100 * 1024)),
    );
    s.write_all(&wsman_request("/wsman", padded.as_bytes(), None))
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 401);
    s.write_all(&wsman_request("/wsman", padded.as_bytes(), Some(OPERATOR)))
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    // A body larger than any request may be is not waited for: the answer says so.
    let mut s = connect(server.http_port);
    let head = String::from_utf8(cimxml_request("", None))
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 2000000");
    s.write_all(head.as_bytes()).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 401);
    assert!(r.closes());
    stop_cleanly(server);
}

#[test]
fn anonymous_requests_cost_a_few_kibibytes_at_most() {
    let server = TestServer::start("");
    let r = exchange(
        server.http_port,
        &wsman_request("/wsman-anon/identify", IDENTIFY.as_bytes(), None),
    );
    assert_eq!(r.status, 200);
    let base = server.status();
    let sampler = Sampler::start(server.pid());
    let body = IDENTIFY
        .replace(
            "<s:Header/>",
            &format!("<s:Header/>{}", " ".repeat(15 << 20)),
        )
        .into_bytes();
    let body = Arc::new(body);
    let answers = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..40)
        .map(|i| {
            let (body, answers, port) = (body.clone(), answers.clone(), server.http_port);
            thread::spawn(move || {
                let mut s = connect(port);
                let request = if i % 2 == 0 {
                    wsman_request("/wsman-anon/identify", &body, None)
                } else {
                    // Chunked: the size is known only while reading.
                    let mut r = b"POST /wsman-anon/identify HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                        Content-Type: application/soap+xml\r\nTransfer-Encoding: chunked\r\n\r\n"
                        .to_vec();
                    for chunk in body.chunks(1 << 20) {
                        r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                        r.extend_from_slice(chunk);
                        r.extend_from_slice(b"\r\n");
                    }
                    r.extend_from_slice(b"0\r\n\r\n");
                    r
                };
                // The server refuses before the body is read and may close while it is sent.
                let _ = s.write_all(&request);
                let status = read_response(&mut s).map(|r| r.status).ok();
                answers.lock().unwrap().push(status);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let peak = sampler.peak();
    let answers = answers.lock().unwrap();
    assert!(
        answers.iter().all(|a| *a == Some(413)),
        "every large anonymous body is refused: {answers:?}"
    );
    assert!(
        peak.rss_mib - base.rss_mib < 16.0,
        "40 bodies of 15 MiB took RSS from {:.1} to {:.1} MiB",
        base.rss_mib,
        peak.rss_mib
    );
    stop_cleanly(server);
}

#[test]
fn idle_sockets_do_not_lock_out_valid_clients() {
    // The defaults: 1024 connections, 128 per client.
    let server = TestServer::start("");
    let mut idle = Vec::new();
    for i in 0..1100u32 {
        let source = loopback(2 + (i / 100) as u8);
        idle.push(connect_from(source, server.http_port).expect("the server accepts"));
    }
    // Connections that opened an instant ago are left to send a request; these have not.
    thread::sleep(Duration::from_millis(500));
    // A new client, and a client whose own sockets are among the idle ones, are served.
    for source in [loopback(1), loopback(2)] {
        let mut s = connect_from(source, server.http_port).unwrap();
        s.write_all(&cimxml_request(ENUM_CLASS_NAMES, Some(ADMIN)))
            .unwrap();
        let r = read_response(&mut s).expect("answered");
        assert_eq!(r.status, 200, "from {source}");
    }
    drop(idle);
    stop_cleanly(server);
}

#[test]
fn busy_connections_are_never_closed_and_a_full_server_says_503() {
    let server = TestServer::start(
        "[limits]\nmax_connections = 4\nmax_connections_per_client = 2\nbody_read_timeout_secs = 30\n",
    );
    // Busy: authenticated requests whose bodies are still coming.
    let start_busy = |source: IpAddr| {
        let mut s = connect_from(source, server.http_port).unwrap();
        let request = cimxml_request(ENUM_CLASS_NAMES, Some(ADMIN));
        s.write_all(&request[..request.len() - 10]).unwrap();
        (s, request[request.len() - 10..].to_vec())
    };
    let mut busy = vec![start_busy(loopback(2)), start_busy(loopback(2))];
    thread::sleep(Duration::from_millis(300)); // the server reads their heads
                                               // The client is at its limit with both busy: refused, plainly.
    let mut s = connect_from(loopback(2), server.http_port).unwrap();
    let r = read_response(&mut s).expect("a refusal is answered");
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("this client"));
    busy.push(start_busy(loopback(3)));
    busy.push(start_busy(loopback(4)));
    thread::sleep(Duration::from_millis(300));
    let mut s = connect_from(loopback(5), server.http_port).unwrap();
    let r = read_response(&mut s).expect("a refusal is answered");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    // The busy requests were not cut off: they complete.
    for (mut s, rest) in busy {
        s.write_all(&rest).unwrap();
        assert_eq!(read_response(&mut s).unwrap().status, 200);
    }
    stop_cleanly(server);
}

#[test]
fn a_wrong_password_flood_keeps_the_server_small_and_serving() {
    let server = TestServer::start("");
    let base = server.status();
    let sampler = Sampler::start(server.pid());
    let answers = Arc::new(Mutex::new(Vec::new()));
    // 300 distinct wrong passwords over 150 connections from two attacking addresses.
    let attackers: Vec<_> = (0..150)
        .map(|i| {
            let (answers, port) = (answers.clone(), server.http_port);
            thread::spawn(move || {
                let mut s = connect_from(loopback(2 + (i % 2) as u8), port).unwrap();
                for j in 0..2 {
                    let password = format!("guess-{i}-{j}");
                    let sent = s.write_all(&cimxml_request(
                        ENUM_CLASS_NAMES,
                        Some(("admin", &password)),
                    ));
                    let r = sent.and_then(|()| read_response(&mut s));
                    let status = r.as_ref().map(|r| r.status).ok();
                    answers.lock().unwrap().push(status);
                    if r.map_or(true, |r| r.closes()) {
                        match connect_from(loopback(2 + (i % 2) as u8), port) {
                            Ok(n) => s = n,
                            Err(_) => return,
                        }
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    // A valid user whose credentials the server has never seen, from elsewhere.
    let r = exchange(
        server.http_port,
        &cimxml_request(ENUM_CLASS_NAMES, Some(OPERATOR)),
    );
    assert_eq!(r.status, 200, "a valid request during the flood");
    for a in attackers {
        a.join().unwrap();
    }
    let peak = sampler.peak();
    let answers = answers.lock().unwrap();
    assert_eq!(answers.len(), 300);
    assert!(
        answers.iter().all(|a| matches!(a, Some(401) | Some(503))),
        "every guess is refused or deferred: {answers:?}"
    );
    assert!(
        answers.contains(&Some(503)),
        "the flood was throttled: {answers:?}"
    );
    assert_bounded(base, peak);
    let log = server.log();
    assert!(log.contains("authentication failed"));
    stop_cleanly(server);
}

#[test]
fn expiring_credentials_under_load_cost_one_check_not_one_per_request() {
    let server = TestServer::start("[limits]\nauth_cache_secs = 1\n");
    let base = server.status();
    let sampler = Sampler::start(server.pid());
    let until = Instant::now() + Duration::from_secs(4);
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (statuses, port) = (statuses.clone(), server.http_port);
            thread::spawn(move || {
                let mut s = connect(port);
                let request = cimxml_request(ENUM_CLASS_NAMES, Some(ADMIN));
                let mut seen = Vec::new();
                while Instant::now() < until {
                    s.write_all(&request).unwrap();
                    seen.push(read_response(&mut s).unwrap().status);
                }
                statuses.lock().unwrap().extend(seen);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let peak = sampler.peak();
    let statuses = statuses.lock().unwrap();
    assert!(statuses.len() > 64);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every request through the expiries is served: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    assert_bounded(base, peak);
    stop_cleanly(server);
}
