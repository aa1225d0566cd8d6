//! evloop's columns of the in-process I/O sections: the `Protocol` API
//! (`evloop`) and the streams (`evloop-streams`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{CHUNK, READ_SIZE, WARM_UP};
use crate::common::{Echo, EchoCheck, pattern};

// ------------------------------------------------------------ evloop Protocol

mod ev {
    use super::*;
    use crate::io::CHUNK;
    use evloop::net::{Protocol, Transport};

    pub struct EchoServer(pub Option<Transport>);

    impl Protocol for EchoServer {
        fn connection_made(&mut self, t: &Transport) {
            self.0 = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            self.0.as_ref().expect("connected").write(data).expect("echo write");
        }
    }

    pub struct EchoClient {
        pub t: Option<Transport>,
        pub check: EchoCheck,
        pub lp: evloop::EventLoop,
    }

    impl Protocol for EchoClient {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            match self.check.data(data) {
                Echo::More => {}
                Echo::Again => self.t.as_ref().unwrap().write(&self.check.msg).unwrap(),
                Echo::Done => self.lp.stop(),
            }
        }
    }

    pub struct BulkServer {
        pub t: Option<Transport>,
        pub total: u64,
        pub count: u64,
    }

    impl Protocol for BulkServer {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            self.count += data.len() as u64;
            assert!(self.count <= self.total, "bulk overrun");
            if self.count == self.total {
                self.t.as_ref().unwrap().write(&self.count.to_le_bytes()).unwrap();
            }
        }
    }

    /// What the bulk client shares with the code that starts it: the
    /// protocol itself is borrowed by the transport while it calls it, so
    /// the pump works on this, not on the protocol.
    pub struct BulkState {
        pub total: u64,
        pub sent: std::cell::Cell<u64>,
        pub chunk: Vec<u8>,
        pub ack: std::cell::RefCell<Vec<u8>>,
    }

    /// Writes while the transport's buffer is at most its high-water mark;
    /// `resume_writing` calls it again.
    pub fn pump(t: &Transport, st: &BulkState) {
        let (_, high) = t.get_write_buffer_limits();
        while st.sent.get() < st.total && t.get_write_buffer_size() <= high {
            let n = (CHUNK as u64).min(st.total - st.sent.get()) as usize;
            t.write(&st.chunk[..n]).unwrap();
            st.sent.set(st.sent.get() + n as u64);
        }
    }

    pub struct BulkClient {
        pub t: Option<Transport>,
        pub st: Rc<BulkState>,
        pub lp: evloop::EventLoop,
    }

    impl Protocol for BulkClient {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            let mut ack = self.st.ack.borrow_mut();
            ack.extend_from_slice(data);
            if ack.len() == 8 {
                self.lp.stop();
            }
        }
        fn resume_writing(&mut self) {
            pump(self.t.as_ref().unwrap(), &self.st);
        }
    }
}

/// One echo session on evloop protocols; public for `echo-count`.
pub fn evloop_echo(size: usize, n: u64) -> Duration {
    use evloop::EventLoop;
    let lp = EventLoop::new().unwrap();
    let msg = Rc::new(pattern(size));
    let (l, m) = (lp.clone(), msg.clone());
    let (server, transport, client) = lp
        .run_until_complete(async move {
            let server =
                l.create_server(|| ev::EchoServer(None), "127.0.0.1", 0, Default::default()).await.unwrap();
            let port = server.local_addr().unwrap().port();
            let l2 = l.clone();
            let factory = move || ev::EchoClient { t: None, check: EchoCheck::new(m, 0), lp: l2 };
            let (t, p) = l.create_connection(factory, "127.0.0.1", port, Default::default()).await.unwrap();
            (server, t, p)
        })
        .unwrap();
    let run = |rounds: u64| {
        client.borrow_mut().check = EchoCheck::new(msg.clone(), rounds);
        let start = Instant::now();
        transport.write(&msg).unwrap();
        lp.run_forever().unwrap();
        let t = start.elapsed();
        assert_eq!(client.borrow().check.completed, rounds);
        t
    };
    run(WARM_UP);
    let t = run(n);
    transport.close();
    server.close();
    server.close_clients();
    lp.run_until_idle().unwrap();
    drop(client);
    lp.close().unwrap();
    t
}

pub fn evloop_bulk(total: u64) -> Duration {
    use evloop::EventLoop;
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let st = Rc::new(ev::BulkState {
        total,
        sent: Default::default(),
        chunk: pattern(CHUNK),
        ack: Default::default(),
    });
    let st2 = st.clone();
    let (server, transport, client) = lp
        .run_until_complete(async move {
            let server = l
                .create_server(
                    move || ev::BulkServer { t: None, total, count: 0 },
                    "127.0.0.1",
                    0,
                    Default::default(),
                )
                .await
                .unwrap();
            let port = server.local_addr().unwrap().port();
            let l2 = l.clone();
            let factory = move || ev::BulkClient { t: None, st: st2, lp: l2 };
            let (t, p) = l.create_connection(factory, "127.0.0.1", port, Default::default()).await.unwrap();
            (server, t, p)
        })
        .unwrap();
    let start = Instant::now();
    ev::pump(&transport, &st);
    lp.run_forever().unwrap();
    let t = start.elapsed();
    let ack = u64::from_le_bytes(st.ack.borrow()[..8].try_into().unwrap());
    assert_eq!(ack, total, "the server received every byte");
    transport.close();
    server.close();
    server.close_clients();
    lp.run_until_idle().unwrap();
    drop(client);
    lp.close().unwrap();
    t
}

// ------------------------------------------------------------ evloop streams

pub fn streams_echo(size: usize, n: u64) -> Duration {
    use evloop::{EventLoop, open_connection, start_server};
    let lp = EventLoop::new().unwrap();
    let msg = Rc::new(pattern(size));
    let (server, mut reader, writer) = lp
        .run_until_complete(async move {
            let server = start_server(
                |mut r, w| async move {
                    loop {
                        let data = r.read(READ_SIZE).await.unwrap();
                        if data.is_empty() {
                            break;
                        }
                        w.write(&data).unwrap();
                        w.drain().await.unwrap();
                    }
                    w.close();
                },
                "127.0.0.1",
                0,
                Default::default(),
            )
            .await
            .unwrap();
            let port = server.local_addr().unwrap().port();
            let (r, w) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
            (server, r, w)
        })
        .unwrap();
    let mut run = |rounds: u64| {
        let (m, w) = (msg.clone(), writer.clone());
        let mut r = std::mem::replace(&mut reader, evloop::StreamReader::new());
        let (t, r) = lp
            .run_until_complete(async move {
                let mut check = EchoCheck::new(m.clone(), rounds);
                let start = Instant::now();
                loop {
                    w.write(&m).unwrap();
                    let data = r.readexactly(m.len()).await.unwrap();
                    if check.data(&data) == Echo::Done {
                        break;
                    }
                }
                (start.elapsed(), r)
            })
            .unwrap();
        reader = r;
        t
    };
    run(WARM_UP);
    let t = run(n);
    writer.close();
    server.close();
    lp.run_until_complete(async move { server.wait_closed().await }).unwrap().unwrap();
    lp.close().unwrap();
    t
}

pub fn streams_bulk(total: u64) -> Duration {
    use evloop::{EventLoop, open_connection, start_server};
    let lp = EventLoop::new().unwrap();
    lp.run_until_complete(async move {
        let server = start_server(
            move |mut r, w| async move {
                let mut count = 0u64;
                loop {
                    let data = r.read(READ_SIZE).await.unwrap();
                    if data.is_empty() {
                        break;
                    }
                    count += data.len() as u64;
                    assert!(count <= total, "bulk overrun");
                    if count == total {
                        w.write(&count.to_le_bytes()).unwrap();
                    }
                }
                w.close();
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let (mut r, w) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        let chunk = pattern(CHUNK);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let n = (CHUNK as u64).min(total - sent) as usize;
            w.write(&chunk[..n]).unwrap();
            w.drain().await.unwrap();
            sent += n as u64;
        }
        let ack = r.readexactly(8).await.unwrap();
        let t = start.elapsed();
        assert_eq!(u64::from_le_bytes(ack[..].try_into().unwrap()), total);
        w.close();
        server.close();
        server.wait_closed().await.unwrap();
        t
    })
    .unwrap()
}
