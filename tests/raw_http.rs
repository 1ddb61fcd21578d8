//! Raw HTTP/1.1 over TCP, for tests that must control every byte: half-closed sockets,
//! requests from chosen source addresses, bodies sent without reading the answer.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long a test waits for any answer before it fails (a hang guard, not a timing).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A CIM-XML EnumerateClassNames request body for root/virt.
pub const ENUM_CLASS_NAMES: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8" ?>"#,
    r#"<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0">"#,
    r#"<SIMPLEREQ><IMETHODCALL NAME="EnumerateClassNames"><LOCALNAMESPACEPATH>"#,
    r#"<NAMESPACE NAME="root"/><NAMESPACE NAME="virt"/></LOCALNAMESPACEPATH>"#,
    r#"</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#
);

/// A response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server said it closes the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// `Basic base64(user:password)`.
pub fn basic((user, password): (&str, &str)) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// A CIM-XML request (EnumerateClassNames headers) with `body`, and credentials if given.
pub fn cimxml_request(body: &str, credentials: Option<(&str, &str)>) -> Vec<u8> {
    let mut head = format!(
        "POST /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/xml; charset=utf-8\r\n\
         Content-Length: {}\r\nCIMOperation: MethodCall\r\nCIMMethod: EnumerateClassNames\r\n\
         CIMObject: root%2Fvirt\r\n",
        body.len()
    );
    if let Some(c) = credentials {
        head.push_str(&format!("Authorization: {}\r\n", basic(c)));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// A connection to `port` on 127.0.0.1 from `source` (any loopback address).
pub fn connect_from(source: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.set_write_timeout(Some(PATIENCE))?;
    Ok(stream)
}

/// A connection to `port` on 127.0.0.1.
pub fn connect(port: u16) -> TcpStream {
    connect_from(IpAddr::from([127, 0, 0, 1]), port).expect("connects")
}

/// Reads one response; an error if the connection ends before a whole one arrived.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "closed before a response: {:?}",
                    String::from_utf8_lossy(&data)
                ),
            ));
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut rest = data[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let mut fill = |rest: &mut Vec<u8>, until: &dyn Fn(&[u8]) -> bool| -> std::io::Result<()> {
        while !until(rest) {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            rest.extend_from_slice(&buf[..n]);
        }
        Ok(())
    };
    if let Some(len) = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        fill(&mut rest, &|r| r.len() >= len)?;
        rest.truncate(len);
        response.body = rest;
    } else if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        fill(&mut rest, &|r| r.windows(5).any(|w| w == b"0\r\n\r\n"))?;
        response.body = dechunk(&rest);
    }
    Ok(response)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..i])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = i + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// Sends `request` on a new connection and reads the response.
pub fn exchange(port: u16, request: &[u8]) -> Response {
    let mut s = connect(port);
    s.write_all(request).expect("request sent");
    read_response(&mut s).expect("a response")
}
