//! tokio's column of the in-process I/O sections (current-thread runtime).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{CHUNK, READ_SIZE, WARM_UP};
use crate::common::{Echo, EchoCheck, pattern};

// -------------------------------------------------------------------- tokio

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub fn tokio_echo(size: usize, n: u64) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    let rt = tokio_rt();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                let k = s.read(&mut buf).await.unwrap();
                if k == 0 {
                    break;
                }
                s.write_all(&buf[..k]).await.unwrap();
            }
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        let msg = Rc::new(pattern(size));
        let mut buf = vec![0u8; READ_SIZE];
        let mut t = Duration::ZERO;
        for rounds in [WARM_UP, n] {
            let mut check = EchoCheck::new(msg.clone(), rounds);
            let start = Instant::now();
            c.write_all(&msg).await.unwrap();
            loop {
                let k = c.read(&mut buf).await.unwrap();
                match check.data(&buf[..k]) {
                    Echo::More => {}
                    Echo::Again => c.write_all(&msg).await.unwrap(),
                    Echo::Done => break,
                }
            }
            t = start.elapsed();
        }
        drop(c);
        server.await.unwrap();
        t
    })
}

pub fn tokio_bulk(total: u64) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    let rt = tokio_rt();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = vec![0u8; READ_SIZE];
            let mut count = 0u64;
            loop {
                let k = s.read(&mut buf).await.unwrap();
                if k == 0 {
                    break;
                }
                count += k as u64;
                assert!(count <= total);
                if count == total {
                    s.write_all(&count.to_le_bytes()).await.unwrap();
                }
            }
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        let chunk = pattern(CHUNK);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let k = (CHUNK as u64).min(total - sent) as usize;
            c.write_all(&chunk[..k]).await.unwrap();
            sent += k as u64;
        }
        let mut ack = [0u8; 8];
        c.read_exact(&mut ack).await.unwrap();
        let t = start.elapsed();
        assert_eq!(u64::from_le_bytes(ack), total);
        drop(c);
        server.await.unwrap();
        t
    })
}
