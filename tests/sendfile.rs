//! `EventLoop::sendfile`: a file sent over a transport, between writes.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::rc::Rc;

use evloop::net::{Protocol, Transport};

struct Quiet;
impl Protocol for Quiet {
    fn data_received(&mut self, _: &[u8]) {}
}

fn temp_file(name: &str, data: &[u8]) -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("evloop-sendfile-{}-{name}", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(data).unwrap();
    (path.clone(), std::fs::File::open(&path).unwrap())
}

#[test]
fn sendfile_goes_between_the_writes_before_and_after_it() {
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (path, file) = temp_file("order", &data);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    });
    let lp = evloop::EventLoop::new().unwrap();
    let l = lp.clone();
    let refused = Rc::new(RefCell::new(None));
    let r = refused.clone();
    let sent = lp
        .run_until_complete(async move {
            let (t, _p): (Transport, _) =
                l.create_connection(|| Quiet, "127.0.0.1", port, Default::default()).await?;
            // More than the socket takes at once, so sendfile must flush
            // the transport's buffer first.
            t.write(&vec![b'H'; 8 * 1024 * 1024])?;
            let t2 = t.clone();
            l.call_soon(move || *r.borrow_mut() = Some(t2.write(b"x")));
            let sent = l.sendfile(&t, &file, 0, None).await?;
            assert!(t.is_reading(), "reading resumed after sendfile");
            t.write(b"TAIL")?;
            t.close();
            Ok::<_, evloop::Error>(sent)
        })
        .unwrap()
        .unwrap();
    assert_eq!(sent, data.len());
    assert!(
        matches!(*refused.borrow(), Some(Err(evloop::Error::InvalidState(_)))),
        "write during sendfile is refused: {:?}",
        refused.borrow()
    );
    let got = peer.join().unwrap();
    assert_eq!(got.len(), 8 * 1024 * 1024 + data.len() + 4);
    assert!(got[..8 * 1024 * 1024].iter().all(|&b| b == b'H'));
    assert!(got[8 * 1024 * 1024..got.len() - 4] == data[..], "file bytes intact and in place");
    assert_eq!(&got[got.len() - 4..], b"TAIL");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn sendfile_on_a_closing_transport_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (path, file) = temp_file("closing", b"abc");
    let lp = evloop::EventLoop::new().unwrap();
    let l = lp.clone();
    let out = lp
        .run_until_complete(async move {
            let (t, _p) = l.create_connection(|| Quiet, "127.0.0.1", port, Default::default()).await.unwrap();
            t.close();
            l.sendfile(&t, &file, 0, None).await
        })
        .unwrap();
    assert!(matches!(out, Err(evloop::Error::InvalidState(_))), "{out:?}");
    drop(listener);
    std::fs::remove_file(path).unwrap();
}
