//! TLS interop: evloop against OpenSSL's `s_client`/`s_server`, Python's
//! asyncio with its `ssl` module (both directions), and curl against the
//! `https_hello` example. Each test skips, saying why, only when its tool
//! is not installed (`.ci/run` installs them).

#![cfg(feature = "tls")]

mod tls_common;
mod util;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use evloop::net::stream::StreamConnectOptions;
use evloop::net::{ConnectOptions, Protocol, ServerOptions, Transport};
use evloop::{Error, EventLoop};
use tls_common::TestPki;
use util::NetTempDir;

/// Whether `tool` runs at all; prints why the test is skipped if not.
fn have(tool: &str, probe: &[&str]) -> bool {
    let ok = Command::new(tool).args(probe).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !ok {
        println!("skipped: `{tool}` is not installed");
    }
    ok
}

/// Kills the child when the test ends, however it ends.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Echoes what it gets and closes once `expect` bytes have come.
struct EchoThenClose {
    transport: Option<Transport>,
    expect: usize,
    seen: usize,
}

impl Protocol for EchoThenClose {
    fn connection_made(&mut self, t: &Transport) {
        self.transport = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        let t = self.transport.as_ref().unwrap();
        t.write(data).unwrap();
        self.seen += data.len();
        if self.seen >= self.expect {
            t.close();
        }
    }
}

/// Runs an evloop TLS echo server for `pki` until the external client
/// `command` (which gets the port appended by `args_for`) exits; returns
/// its stdout.
fn serve_until_client_exits(
    pki: &TestPki,
    expect: usize,
    spawn: impl FnOnce(u16) -> Child + 'static,
) -> std::process::Output {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let config = pki.server_config();
    lp.run_until_complete(async move {
        let options = ServerOptions { ssl: Some(config), ..Default::default() };
        let factory = move || EchoThenClose { transport: None, expect, seen: 0 };
        let server = l.create_server(factory, "127.0.0.1", 0, options).await?;
        let port = server.local_addr().unwrap().port();
        let child = spawn(port);
        // The client runs in its own process; wait for it off the loop.
        let output = l.run_in_executor(move || child.wait_with_output()).await??;
        server.close();
        Ok::<_, Error>(output)
    })
    .unwrap()
    .unwrap()
}

#[test]
fn openssl_s_client_against_an_evloop_server() {
    if !have("openssl", &["version"]) {
        return;
    }
    let pki = TestPki::localhost();
    let dir = NetTempDir::new("tls-s-client");
    let (ca, _, _) = pki.write_pem(dir.path());
    let message = b"hello from openssl\n";
    let output = serve_until_client_exits(&pki, message.len(), move |port| {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
            .args(["-verify_return_error", "-quiet", "-CAfile"])
            .arg(&ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl s_client");
        child.stdin.take().unwrap().write_all(message).unwrap();
        child
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.stdout, message, "stderr: {stderr}");
    assert!(stderr.contains("verify return:1"), "the chain verified: {stderr}");
}

#[test]
fn an_evloop_client_against_openssl_s_server() {
    if !have("openssl", &["version"]) {
        return;
    }
    let pki = TestPki::localhost();
    let dir = NetTempDir::new("tls-s-server");
    let (_, cert, key) = pki.write_pem(dir.path());
    let mut server = Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev", "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openssl s_server");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    // "ACCEPT 127.0.0.1:PORT" once it listens.
    let port: u16 = loop {
        let line = lines.next().expect("s_server printed its port").unwrap();
        if let Some(rest) = line.strip_prefix("ACCEPT") {
            break rest.rsplit(':').next().unwrap().trim().parse().unwrap();
        }
    };
    let _reaper = Reaper(Some(server));
    let client = pki.client_config();
    let reply = evloop::run(async move {
        let connect = ConnectOptions::new().ssl(client).server_hostname("localhost");
        let (mut reader, writer) =
            evloop::open_connection("127.0.0.1", port, StreamConnectOptions::new().connect(connect)).await?;
        writer.write(b"evloop\n")?;
        let reply = reader.readline().await?;
        writer.close();
        Ok::<_, Error>(reply)
    })
    .unwrap()
    .unwrap();
    // -rev answers each line reversed.
    assert_eq!(reply, b"poolve\n");
}

const PY_CLIENT: &str = r#"
import asyncio, hashlib, ssl, sys
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    ctx.set_alpn_protocols(["evloop-test"])
    r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]), ssl=ctx, server_hostname="localhost")
    version = w.get_extra_info("ssl_object").version()
    blob = bytes(range(256)) * 4096  # 1 MiB
    w.write(blob)
    await w.drain()
    back = await r.readexactly(len(blob))
    assert back == blob, "echo differs"
    rest = await r.read()  # the server closes: EOF (after close_notify)
    assert rest == b"", rest
    w.close()
    await w.wait_closed()
    print("ok", hashlib.sha256(back).hexdigest(), version)
asyncio.run(main())
"#;

#[test]
fn a_python_asyncio_client_against_an_evloop_server() {
    if !have("python3", &["-c", "import ssl"]) {
        return;
    }
    let pki = TestPki::localhost();
    let dir = NetTempDir::new("tls-py-client");
    let (ca, _, _) = pki.write_pem(dir.path());
    let output = serve_until_client_exits(&pki, 1 << 20, move |port| {
        Command::new("python3")
            .args(["-c", PY_CLIENT, &port.to_string()])
            .arg(&ca)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python3")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "python: {stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.starts_with("ok ") && stdout.contains("TLSv1.3"), "{stdout}");
}

const PY_SERVER: &str = r#"
import asyncio, ssl, sys
async def main():
    done = asyncio.Event()
    async def handle(r, w):
        line = await r.readline()
        proto = w.get_extra_info("ssl_object").selected_alpn_protocol()
        w.write(line.upper().rstrip(b"\n") + b" " + proto.encode() + b"\n")
        await w.drain()
        w.close()
        await w.wait_closed()
        done.set()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    ctx.set_alpn_protocols(["evloop-test"])
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.wait_for(done.wait(), 60)
    server.close()
asyncio.run(main())
"#;

#[test]
fn an_evloop_client_against_a_python_asyncio_server() {
    if !have("python3", &["-c", "import ssl"]) {
        return;
    }
    let pki = TestPki::localhost();
    let dir = NetTempDir::new("tls-py-server");
    let (_, cert, key) = pki.write_pem(dir.path());
    let mut server = Command::new("python3")
        .args(["-c", PY_SERVER])
        .arg(&cert)
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().expect("the python server printed its port");
    let mut reaper = Reaper(Some(server));
    let client = pki.client_config_alpn(&[b"evloop-test"]);
    let (reply, alpn) = evloop::run(async move {
        let connect = ConnectOptions::new().ssl(client).server_hostname("localhost");
        let (mut reader, writer) =
            evloop::open_connection("127.0.0.1", port, StreamConnectOptions::new().connect(connect)).await?;
        let alpn = writer.transport().alpn_protocol();
        writer.write(b"hello python\n")?;
        let reply = reader.read_to_end().await?;
        writer.close();
        Ok::<_, Error>((reply, alpn))
    })
    .unwrap()
    .unwrap();
    assert_eq!(reply, b"HELLO PYTHON evloop-test\n");
    assert_eq!(alpn.as_deref(), Some(&b"evloop-test"[..]));
    let status = reaper.0.take().unwrap().wait().unwrap();
    assert!(status.success(), "the python server finished cleanly");
}

/// The example binaries sit next to the test binaries' directory
/// (`cargo test` builds them).
fn example(name: &str) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    path.exists().then_some(path)
}

#[test]
fn curl_against_the_https_example() {
    if !have("curl", &["--version"]) {
        return;
    }
    let Some(bin) = example("https_hello") else {
        println!("skipped: the https_hello example is not built (run `cargo test`, which builds it)");
        return;
    };
    let mut child =
        Command::new(bin).args(["--serve", "0"]).stdout(Stdio::piped()).spawn().expect("spawn https_hello");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _reaper = Reaper(Some(child));
    let url = line.trim().strip_prefix("listening on ").expect("the example printed its URL").to_owned();
    let output = Command::new("curl").args(["-sSk", "--max-time", "30", &url]).output().expect("run curl");
    assert!(output.status.success(), "curl: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.stdout, br#"{"message": "Hello World"}"#);
    // Without -k, curl refuses the self-signed certificate.
    let strict = Command::new("curl").args(["-sS", "--max-time", "30", &url]).output().expect("run curl");
    assert!(!strict.status.success(), "a self-signed certificate is not trusted by default");
}
