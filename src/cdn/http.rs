//! The purge requests' HTTP/1.1 client: one blocking request per connection
//! (`Connection: close`), over TLS for `https://` (rustls on aws-lc-rs, the
//! system's roots or the target's `ca_file`). Purges are a few requests a
//! second at most, made from the purger's own thread, so nothing here is
//! pooled or asynchronous; what matters is that every step has a timeout
//! and every answer a readable error.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

/// Largest answer read; a purge API's reply is small.
const MAX_ANSWER: usize = 64 << 10;

/// Where requests go.
pub struct Endpoint {
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    target: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(p) => {
            let text = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let pems = pem::parse_many(text).map_err(|e| format!("{}: {e}", p.display()))?;
            for c in pems.into_iter().filter(|p| p.tag() == "CERTIFICATE") {
                roots.add(c.into_contents().into()).map_err(|e| format!("{}: {e}", p.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no PEM CERTIFICATE in it", p.display()));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

impl Endpoint {
    /// For `url` (checked by the config: http or https with a host).
    pub fn new(url: &str, ca_file: Option<&std::path::Path>, timeout: Duration) -> Result<Endpoint, String> {
        let u = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let host = u.host_str().ok_or_else(|| format!("{url}: no host"))?.to_string();
        let port = u.port_or_known_default().ok_or_else(|| format!("{url}: no port"))?;
        let mut target = u.path().to_string();
        if let Some(q) = u.query() {
            target.push('?');
            target.push_str(q);
        }
        let tls = match u.scheme() {
            "https" => {
                let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
                let name = ServerName::try_from(bare).map_err(|e| format!("{url}: {e}"))?;
                Some((tls_config(ca_file)?, name))
            }
            _ => None,
        };
        Ok(Endpoint { host, port, target, tls, timeout })
    }

    /// Sends one request; returns the status code and body, or why none came.
    pub fn send(
        &self,
        method: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        let addr = (self.host.trim_start_matches('[').trim_end_matches(']'), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{}: no address", self.host))?;
        let tcp =
            TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let mut head = format!("{method} {} HTTP/1.1\r\nHost: {}", self.target, self.host);
        if !matches!((self.tls.is_some(), self.port), (false, 80) | (true, 443)) {
            head.push_str(&format!(":{}", self.port));
        }
        head.push_str("\r\nUser-Agent: ocsp-origin-purger\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        let answer = match &self.tls {
            None => exchange(tcp, &req),
            Some((cfg, name)) => {
                let conn =
                    rustls::ClientConnection::new(cfg.clone(), name.clone()).map_err(|e| e.to_string())?;
                exchange(rustls::StreamOwned::new(conn, tcp), &req)
            }
        }
        .map_err(|e| format!("{addr}: {e}"))?;
        parse(&answer)
    }
}

fn exchange(mut s: impl Read + Write, req: &[u8]) -> Result<Vec<u8>, String> {
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    s.flush().map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > MAX_ANSWER {
                    break;
                }
            }
            // A TLS peer that closes without close_notify: what came is what it said.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(out)
}

fn parse(answer: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(answer) {
        Ok(httparse::Status::Complete(n)) => Ok((r.code.unwrap_or(0), answer[n..].to_vec())),
        Ok(httparse::Status::Partial) if answer.is_empty() => Err("closed without an answer".into()),
        Ok(httparse::Status::Partial) => Err("answer cut short".into()),
        Err(e) => Err(format!("not an HTTP answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_and_its_answer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let n = c.read(&mut buf).unwrap();
            c.write_all(b"HTTP/1.1 200 OK\r\nX-Purged: 2\r\nContent-Length: 2\r\n\r\nok").unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let ep =
            Endpoint::new(&format!("http://127.0.0.1:{port}/p?q=1"), None, Duration::from_secs(2)).unwrap();
        let (code, body) = ep.send("PURGE", &[("xkey-purge", "a b")], b"").unwrap();
        assert_eq!((code, body.as_slice()), (200, &b"ok"[..]));
        let req = t.join().unwrap();
        assert!(req.starts_with("PURGE /p?q=1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("Host: 127.0.0.1:{port}\r\n")), "{req}");
        assert!(req.contains("xkey-purge: a b\r\n"), "{req}");
        // Nobody listening: an error naming the address, at once.
        drop(ep);
        let ep = Endpoint::new(&format!("http://127.0.0.1:{port}/"), None, Duration::from_secs(2)).unwrap();
        assert!(ep.send("PURGE", &[], b"").unwrap_err().contains("127.0.0.1"));
        assert!(parse(b"garbage\r\n\r\n").is_err());
    }
}
