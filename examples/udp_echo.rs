//! Run with: cargo run --example udp_echo
//!
//! A UDP echo server and client, both [`DatagramProtocol`]s on one loop
//! (asyncio's "UDP echo server/client protocol" pair). The server endpoint
//! is bound to a free port and sends every datagram back to its sender; the
//! client endpoint is *connected* to the server (`remote_addr`), so it sends
//! with `sendto(data, None)` and only receives the server's datagrams.
//!
//! The demo sends a few datagrams, prints each echo, and exits once all have
//! come back (or after one second, reporting any that were lost: this is
//! UDP, although nothing is lost on loopback in practice).
//!
//! `--serve [PORT]` runs only the server, forever (default port 9999); try
//! `nc -u 127.0.0.1 9999` in another terminal.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use evloop::net::{DatagramOptions, DatagramProtocol, DatagramTransport, SockAddr};
use evloop::{Error, EventLoop};

const MESSAGES: [&str; 4] = ["hello", "from", "a UDP", "client"];

/// Sends each datagram back where it came from.
struct EchoServer {
    transport: Option<DatagramTransport>,
}

impl DatagramProtocol for EchoServer {
    fn connection_made(&mut self, transport: &DatagramTransport) {
        self.transport = Some(transport.clone());
    }

    fn datagram_received(&mut self, data: &[u8], addr: SockAddr) {
        let from = addr.as_socket().map_or_else(|| "?".to_owned(), |a| a.to_string());
        println!("[server] {} bytes from {from}: {:?}", data.len(), String::from_utf8_lossy(data));
        if let Some(transport) = &self.transport {
            transport.sendto(data, Some(&addr)).ok();
        }
    }

    fn error_received(&mut self, error: Error) {
        println!("[server] error: {error}");
    }
}

/// Sends every message on `connection_made`, then collects the echoes;
/// `done` resolves once all of them are back.
struct EchoClient {
    echoes: Vec<String>,
    done: evloop::Future<Vec<String>>,
}

impl DatagramProtocol for EchoClient {
    fn connection_made(&mut self, transport: &DatagramTransport) {
        for message in MESSAGES {
            println!("[client] send {message:?}");
            // `None`: the endpoint is connected to the server.
            transport.sendto(message.as_bytes(), None).ok();
        }
    }

    fn datagram_received(&mut self, data: &[u8], _addr: SockAddr) {
        let echo = String::from_utf8_lossy(data).into_owned();
        println!("[client] echo {echo:?}");
        self.echoes.push(echo);
        if self.echoes.len() == MESSAGES.len() {
            let _ = self.done.set_result(std::mem::take(&mut self.echoes));
        }
    }

    fn error_received(&mut self, error: Error) {
        // E.g. ECONNREFUSED: an ICMP "port unreachable" from a missing server.
        let _ = self.done.set_exception(error);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut serve_forever = false;
    let mut port = 0;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--serve" => {
                serve_forever = true;
                port = 9999;
            }
            other if serve_forever => port = other.parse().map_err(|_| format!("bad port {other:?}"))?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }

    let lp = EventLoop::new()?;
    let l = lp.clone();
    lp.run_until_complete(async move {
        let local = SocketAddr::from(([127, 0, 0, 1], port));
        let options = DatagramOptions { local_addr: Some(local), ..Default::default() };
        let (server, _) = l.create_datagram_endpoint(|| EchoServer { transport: None }, options).await?;
        let server_addr = server.local_addr()?.as_socket().expect("a UDP socket has an IP address");
        println!("[server] UDP echo server on {server_addr}");
        if serve_forever {
            // The endpoint lives on the loop; wait forever.
            return l.create_future::<()>().await;
        }

        let done = l.create_future();
        let client_done = done.clone();
        let options = DatagramOptions { remote_addr: Some(server_addr), ..Default::default() };
        let factory = move || EchoClient { echoes: Vec::new(), done: client_done };
        let (client, protocol) = l.create_datagram_endpoint(factory, options).await?;
        let outcome = evloop::wait_for(done, Duration::from_secs(1)).await;
        client.close();
        server.close();
        let echoes = match outcome {
            Ok(Ok(echoes)) => echoes,
            Ok(Err(e)) => return Err(e),
            Err(Error::Timeout) => {
                let got = protocol.borrow().echoes.len();
                let lost = format!("{} of {} datagrams came back within 1 s", got, MESSAGES.len());
                return Err(io::Error::other(lost).into());
            }
            Err(e) => return Err(e),
        };
        // UDP does not promise order, but on loopback the echoes match.
        let mut sorted = echoes.clone();
        sorted.sort();
        let mut sent: Vec<String> = MESSAGES.iter().map(|m| m.to_string()).collect();
        sent.sort();
        if sorted != sent {
            return Err(io::Error::other(format!("echoes {echoes:?} do not match {MESSAGES:?}")).into());
        }
        println!("[client] all {} datagrams echoed", echoes.len());
        Ok(())
    })??;
    lp.close()?;
    Ok(())
}
