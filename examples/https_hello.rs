//! Run with: cargo run --example https_hello
//!
//! `http_hello`'s "hello world" over HTTPS: the same kind of [`Protocol`]
//! (a buffer per connection, every complete request head answered,
//! keep-alive), served with `ServerOptions::ssl`. The protocol never sees
//! TLS: its [`Transport`] takes and gives plaintext.
//!
//! The certificate is self-signed, made at start with rcgen for
//! `localhost` and 127.0.0.1 (or `--cert FILE --key FILE`, PEM).
//!
//! By default the example runs a demo: an evloop HTTPS client that trusts
//! the certificate sends keep-alive requests, checks the answers and the
//! TLS details, then it exits. `--serve [PORT]` serves until killed
//! (default 8443; 0 picks a free port) and prints its URL first, e.g. try
//! `curl -k https://127.0.0.1:8443/`.

use std::rc::Rc;
use std::sync::Arc;

use evloop::net::tls::{self, pki_types};
use evloop::net::{ConnectOptions, Protocol, ServerOptions, Transport};
use evloop::{Error, EventLoop};

const BODY: &str = r#"{"message": "Hello World"}"#;
const MAX_HEAD: usize = 16 * 1024;

/// One HTTPS connection (plaintext, thanks to the TLS layer).
struct HttpConnection {
    transport: Option<Transport>,
    buffer: Vec<u8>,
}

impl Protocol for HttpConnection {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        let mut out = Vec::new();
        let mut close = false;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&self.buffer) {
                Ok(httparse::Status::Complete(len)) => {
                    let (status, body) = match (request.method, request.path) {
                        (Some("GET"), Some("/")) => ("200 OK", BODY),
                        (_, Some("/")) => ("405 Method Not Allowed", ""),
                        _ => ("404 Not Found", ""),
                    };
                    close = request.version == Some(0)
                        || request.headers.iter().any(|h| {
                            h.name.eq_ignore_ascii_case("connection")
                                && h.value.eq_ignore_ascii_case(b"close")
                        });
                    out.extend_from_slice(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
                            body.len(),
                            if close { "connection: close\r\n" } else { "" }
                        )
                        .as_bytes(),
                    );
                    self.buffer.drain(..len);
                    if close {
                        break;
                    }
                }
                Ok(httparse::Status::Partial) if self.buffer.len() <= MAX_HEAD => break,
                _ => {
                    out.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
                    close = true;
                    break;
                }
            }
        }
        let Some(t) = &self.transport else { return };
        if !out.is_empty() {
            let _ = t.write(&out);
        }
        if close {
            t.close();
        }
    }
}

/// A self-signed certificate for localhost and 127.0.0.1.
fn self_signed() -> (pki_types::CertificateDer<'static>, pki_types::PrivateKeyDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a certificate");
    let key = pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    (cert.cert.der().clone(), key)
}

fn arg_after(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cert, key) = self_signed();
    let server_config = match (arg_after(&args, "--cert"), arg_after(&args, "--key")) {
        (Some(cert), Some(key)) => tls::server_config_from_pem_files(cert, key)?,
        _ => tls::server_config(vec![cert.clone()], key)?,
    };
    let serve = args
        .iter()
        .position(|a| a == "--serve")
        .map(|i| args.get(i + 1).and_then(|p| p.parse::<u16>().ok()).unwrap_or(8443));
    let lp = EventLoop::new()?;
    let l = lp.clone();
    lp.run_until_complete(async move {
        let options = ServerOptions { ssl: Some(server_config), ..Default::default() };
        let factory = || HttpConnection { transport: None, buffer: Vec::new() };
        let server = l.create_server(factory, "127.0.0.1", serve.unwrap_or(0), options).await?;
        let port = server.local_addr().expect("a TCP server").port();
        if serve.is_some() {
            // One line, flushed: scripts wait for it before connecting.
            println!("listening on https://127.0.0.1:{port}/");
            use std::io::Write;
            std::io::stdout().flush().ok();
            return server.serve_forever().await;
        }
        demo(&l, port, cert).await?;
        server.close();
        server.wait_closed().await
    })?
}

/// A client that trusts the self-signed certificate: three keep-alive
/// requests on one TLS connection.
async fn demo(lp: &EventLoop, port: u16, cert: pki_types::CertificateDer<'static>) -> Result<(), Error> {
    struct Client(Rc<std::cell::RefCell<Vec<u8>>>);
    impl Protocol for Client {
        fn data_received(&mut self, data: &[u8]) {
            self.0.borrow_mut().extend_from_slice(data);
        }
    }
    let mut config = (*tls::client_config_with_roots([cert])?).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let options = ConnectOptions::new().ssl(Arc::new(config)).server_hostname("localhost");
    let got = Rc::new(std::cell::RefCell::new(Vec::new()));
    let g = got.clone();
    let (t, _) = lp.create_connection(move || Client(g), "127.0.0.1", port, options).await?;
    println!(
        "connected: {:?}, {:?}",
        t.tls_version().expect("a TLS connection"),
        t.cipher_suite().expect("a cipher suite").suite()
    );
    for path in ["/", "/", "/missing"] {
        got.borrow_mut().clear();
        t.write(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())?;
        while !got.borrow().ends_with(b"\r\n\r\n") && !got.borrow().ends_with(BODY.as_bytes()) {
            evloop::sleep(std::time::Duration::from_millis(1)).await;
        }
        let reply = String::from_utf8_lossy(&got.borrow()).into_owned();
        println!("GET {path} -> {}", reply.lines().next().unwrap_or(""));
        let expected = if path == "/" { "HTTP/1.1 200 OK" } else { "HTTP/1.1 404 Not Found" };
        assert!(reply.starts_with(expected), "{reply}");
    }
    t.close();
    println!("demo passed");
    Ok(())
}
