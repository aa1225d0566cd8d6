//! Run with: cargo run --example tls_echo
//!
//! A TLS echo server and a TLS client on one loop, with streams: the
//! server (`start_server` with `ServerOptions::ssl`) writes back every
//! line; the client (`open_connection` with `ConnectOptions::ssl`) sends a
//! few lines and checks the echo. The certificate is self-signed, made at
//! start with rcgen for `localhost`, and the client trusts exactly it (a
//! public server would use `tls::client_config()`, Mozilla's roots).
//!
//! `--serve [PORT]` runs only the server (default 8443), e.g. try
//! `openssl s_client -connect 127.0.0.1:8443 -quiet`.

use evloop::net::stream::{StreamConnectOptions, StreamServerOptions};
use evloop::net::tls::{self, pki_types};
use evloop::net::{ConnectOptions, ServerOptions};
use evloop::{Error, StreamReader, StreamWriter};

async fn echo(mut reader: StreamReader, writer: StreamWriter) {
    let peer = writer.peer_addr();
    loop {
        match reader.readline().await {
            Ok(line) if !line.is_empty() => {
                if writer.write(&line).is_err() || writer.drain().await.is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    writer.close();
    println!("server: {peer:?} done");
}

fn main() -> Result<(), Error> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("generate a certificate");
    let der = cert.cert.der().clone();
    let key = pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let server_config = tls::server_config(vec![der.clone()], key)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serve = args
        .iter()
        .position(|a| a == "--serve")
        .map(|i| args.get(i + 1).and_then(|p| p.parse::<u16>().ok()).unwrap_or(8443));

    evloop::run(async move {
        let options = StreamServerOptions {
            server: ServerOptions { ssl: Some(server_config), ..Default::default() },
            ..Default::default()
        };
        let server = evloop::start_server(echo, "127.0.0.1", serve.unwrap_or(0), options).await?;
        let port = server.local_addr().expect("a TCP server").port();
        println!("server: TLS echo on 127.0.0.1:{port}");
        if serve.is_some() {
            return server.serve_forever().await;
        }

        let client_config = tls::client_config_with_roots([der])?;
        let connect = ConnectOptions::new().ssl(client_config).server_hostname("localhost");
        let (mut reader, writer) =
            evloop::open_connection("127.0.0.1", port, StreamConnectOptions::new().connect(connect)).await?;
        let t = writer.transport();
        println!("client: {:?} with {:?}", t.tls_version().unwrap(), t.cipher_suite().unwrap().suite());
        for line in ["hello\n", "over TLS\n", "goodbye\n"] {
            writer.write(line.as_bytes())?;
            let echoed = reader.readline().await?;
            assert_eq!(echoed, line.as_bytes());
            print!("client: echoed {}", String::from_utf8_lossy(&echoed));
        }
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await?;
        println!("client: done");
        Ok(())
    })?
}
