//! Socket addresses between socket2's `SockAddr` and the form Python's
//! `socket` module uses, for the native transports' fast paths.
//!
//! Invariant: a conversion is only ever done where the result is exactly
//! what Python's socket module would give or accept; everything else
//! (Unix paths, host names, IPv6 scopes, odd tuples) answers `None` and
//! the caller uses the Python socket's own method instead.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use socket2::SockAddr;

/// The Python form of an IP socket address, as `recvfrom` returns it:
/// `(host, port)` for IPv4, `(host, port, flowinfo, scope_id)` for IPv6.
/// `None` for other families. A scoped IPv6 host is named as Python
/// names it (`getnameinfo`: `fe80::1%eth0`).
pub(crate) fn to_python<'py>(py: Python<'py>, addr: &SockAddr) -> Option<PyResult<Bound<'py, PyTuple>>> {
    match addr.as_socket()? {
        SocketAddr::V4(v4) => {
            let host = v4_host(py, *v4.ip());
            Some(PyTuple::new(py, [host.into_any(), port(py, v4.port())]))
        }
        SocketAddr::V6(v6) => Some(v6_to_python(py, &v6)),
    }
}

/// The Python form of an accepted connection's peer address, as
/// `socket.accept()` gives it: [`to_python`]'s tuple for IP; for
/// `AF_UNIX`, `''` when the peer is unnamed (the usual client), its path
/// as a `str` (the file system encoding, as Python decodes it), or an
/// abstract name as `bytes` with its leading NUL.
///
/// # Errors
///
/// A family other than these (the caller accepts natively only on them),
/// or a failed `getnameinfo` for a scoped IPv6 peer.
pub(crate) fn accepted_to_python<'py>(py: Python<'py>, addr: &SockAddr) -> PyResult<Bound<'py, PyAny>> {
    if let Some(ip) = to_python(py, addr) {
        return ip.map(Bound::into_any);
    }
    if !addr.is_unix() {
        return Err(pyo3::exceptions::PyOSError::new_err(format!(
            "accept() gave an address of family {}",
            addr.family()
        )));
    }
    if let Some(path) = addr.as_pathname() {
        return Ok(path.as_os_str().into_pyobject(py)?.into_any());
    }
    if let Some(name) = addr.as_abstract_namespace() {
        let mut named = Vec::with_capacity(name.len() + 1);
        named.push(0);
        named.extend_from_slice(name);
        return Ok(PyBytes::new(py, &named).into_any());
    }
    Ok(PyString::new(py, "").into_any())
}

/// An IPv4 address as Python writes it (`"127.0.0.1"`), the `str` of the
/// last address converted kept for the next: a server's peers, a client's
/// own address and its server's all tend to repeat one host.
pub(crate) fn v4_host(py: Python<'_>, ip: Ipv4Addr) -> Bound<'_, PyString> {
    static LAST: Mutex<Option<(Ipv4Addr, Py<PyString>)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((cached, host)) = &*last
        && *cached == ip
    {
        return host.bind(py).clone();
    }
    // Dotted decimal without the formatting machinery: at most 15 bytes.
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    let host = PyString::new(py, std::str::from_utf8(&text[..len]).expect("digits and dots are ASCII"));
    *last = Some((ip, host.clone().unbind()));
    host
}

fn v6_to_python<'py>(py: Python<'py>, v6: &SocketAddrV6) -> PyResult<Bound<'py, PyTuple>> {
    let ip = PyString::new(py, &v6.ip().to_string()).into_any();
    let host = if v6.scope_id() == 0 {
        ip
    } else {
        let socket = py.import("socket")?;
        let flags = libc::NI_NUMERICHOST | libc::NI_NUMERICSERV;
        let named =
            socket.call_method1("getnameinfo", ((ip, v6.port(), v6.flowinfo(), v6.scope_id()), flags))?;
        named.get_item(0)?
    };
    let flowinfo = v6.flowinfo().into_pyobject(py)?.into_any();
    let scope = v6.scope_id().into_pyobject(py)?.into_any();
    PyTuple::new(py, [host, port(py, v6.port()), flowinfo, scope])
}

fn port(py: Python<'_>, port: u16) -> Bound<'_, PyAny> {
    port.into_pyobject(py).expect("a u16 always converts").into_any()
}

/// The `SockAddr` of a Python address for a socket of `family`, if the
/// address is an IP literal in the tuple form that family takes
/// (`(host, port)` for `AF_INET`; `(host, port[, flowinfo[, scope_id]])`
/// for `AF_INET6`). `None` means "let Python's `sendto` resolve it".
pub(crate) fn from_python(addr: &Bound<'_, PyAny>, family: i32) -> Option<SockAddr> {
    let tuple = addr.cast::<PyTuple>().ok()?;
    let host = tuple.get_item(0).ok()?;
    let host = host.cast::<PyString>().ok()?.to_str().ok()?;
    let port: u16 = tuple.get_item(1).ok()?.extract().ok()?;
    let ip: IpAddr = host.parse().ok()?;
    match (family, ip, tuple.len()) {
        (libc::AF_INET, IpAddr::V4(v4), 2) => Some(SocketAddrV4::new(v4, port).into()),
        (libc::AF_INET6, IpAddr::V6(v6), 2..=4) => {
            let flowinfo: u32 = match tuple.get_item(2) {
                Ok(f) => f.extract().ok()?,
                Err(_) => 0,
            };
            let scope: u32 = match tuple.get_item(3) {
                Ok(s) => s.extract().ok()?,
                Err(_) => 0,
            };
            Some(SocketAddrV6::new(v6, port, flowinfo, scope).into())
        }
        _ => None,
    }
}
