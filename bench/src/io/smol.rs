//! smol's column of the in-process I/O sections (`LocalExecutor` +
//! `async-io`).

use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{CHUNK, READ_SIZE, WARM_UP};
use crate::common::{Echo, EchoCheck, pattern};

// --------------------------------------------------------------------- smol

pub fn smol_echo(size: usize, n: u64) -> Duration {
    use async_executor::LocalExecutor;
    use async_io::Async;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let ex = LocalExecutor::new();
    async_io::block_on(ex.run(async {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let server = ex.spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.get_ref().set_nodelay(true).unwrap();
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                let k = s.read(&mut buf).await.unwrap();
                if k == 0 {
                    break;
                }
                s.write_all(&buf[..k]).await.unwrap();
            }
        });
        let mut c = Async::<TcpStream>::connect(addr).await.unwrap();
        c.get_ref().set_nodelay(true).unwrap();
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
        server.await;
        t
    }))
}

pub fn smol_bulk(total: u64) -> Duration {
    use async_executor::LocalExecutor;
    use async_io::Async;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let ex = LocalExecutor::new();
    async_io::block_on(ex.run(async {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let server = ex.spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.get_ref().set_nodelay(true).unwrap();
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
        let mut c = Async::<TcpStream>::connect(addr).await.unwrap();
        c.get_ref().set_nodelay(true).unwrap();
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
        server.await;
        t
    }))
}
