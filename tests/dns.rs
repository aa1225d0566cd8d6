//! Name resolution: getaddrinfo and getnameinfo.

mod util;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use evloop::EventLoop;
use util::within;

fn new_loop() -> EventLoop {
    EventLoop::new().expect("new loop")
}

#[test]
fn getaddrinfo_localhost_gives_loopback_addresses() {
    let lp = new_loop();
    let l = lp.clone();
    let addrs = lp
        .run_until_complete(async move { within("getaddrinfo", l.getaddrinfo("localhost", 8080)).await })
        .unwrap()
        .unwrap();
    assert!(!addrs.is_empty());
    for a in &addrs {
        assert!(a.ip().is_loopback(), "{a}");
        assert_eq!(a.port(), 8080);
    }
}

#[test]
fn getaddrinfo_of_numeric_addresses_answers_them_as_they_are() {
    let lp = new_loop();
    let l = lp.clone();
    let (v4, v6) = lp
        .run_until_complete(async move {
            (l.getaddrinfo("127.0.0.1", 1).await.unwrap(), l.getaddrinfo("[::1]", 2).await.unwrap())
        })
        .unwrap();
    assert_eq!(v4, [SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1)]);
    assert_eq!(v6, [SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 2)]);
}

#[test]
fn getnameinfo_numeric_gives_the_address_and_port() {
    let lp = new_loop();
    let l = lp.clone();
    let flags = libc::NI_NUMERICHOST | libc::NI_NUMERICSERV;
    let (v4, v6) = lp
        .run_until_complete(async move {
            let v4 =
                within("getnameinfo", l.getnameinfo(SocketAddr::from(([127, 0, 0, 1], 5353)), flags)).await;
            let v6 =
                within("getnameinfo", l.getnameinfo(SocketAddr::from((Ipv6Addr::LOCALHOST, 443)), flags))
                    .await;
            (v4, v6)
        })
        .unwrap();
    assert_eq!(v4.unwrap(), ("127.0.0.1".to_owned(), "5353".to_owned()));
    assert_eq!(v6.unwrap(), ("::1".to_owned(), "443".to_owned()));
}

#[test]
fn getaddrinfo_accepts_only_well_formed_brackets() {
    let lp = new_loop();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let v6 = l.getaddrinfo("[::1]", 80).await.unwrap();
        assert_eq!(v6, [SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 80)]);
        for bad in ["[::1", "::1]", "[127.0.0.1]", "[]", "[::1]]", "[localhost]"] {
            let e = l.getaddrinfo(bad, 80).await.expect_err(bad);
            assert_eq!(e.io_kind(), Some(std::io::ErrorKind::InvalidInput), "{bad}: {e}");
            assert!(e.to_string().contains("IPv6"), "{bad}: {e}");
        }
    })
    .unwrap();
}

/// Regression: the system resolver's message ("failed to lookup address
/// information: …") did not say which name failed; through
/// `open_connection` the caller could not tell which host was wrong.
#[test]
fn a_name_that_does_not_resolve_is_named_in_the_error() {
    let lp = new_loop();
    let l = lp.clone();
    let (direct, connect) = lp
        .run_until_complete(async move {
            // RFC 6761: .invalid never resolves.
            let direct = within("getaddrinfo", l.getaddrinfo("nosuch-host.invalid", 8080)).await;
            let connect = within(
                "open_connection",
                evloop::open_connection("nosuch-host.invalid", 81, Default::default()),
            )
            .await;
            (direct.unwrap_err(), connect.unwrap_err())
        })
        .unwrap();
    assert!(direct.to_string().starts_with("resolve nosuch-host.invalid:8080: "), "{direct}");
    assert!(direct.io_kind().is_some(), "still an I/O error: {direct:?}");
    assert!(connect.to_string().starts_with("resolve nosuch-host.invalid:81: "), "{connect}");
}
