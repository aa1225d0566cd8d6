//! Name resolution off the loop thread: `getaddrinfo` and `getnameinfo`
//! run on the loop's executor, as asyncio does.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use crate::error::{Error, Result};
use crate::runtime::event_loop::EventLoop;

impl EventLoop {
    /// Resolves `host` and `port` to socket addresses (asyncio's
    /// `getaddrinfo`), in the resolver's order. Numeric addresses are
    /// answered at once; names are looked up with the system resolver on
    /// the loop's executor, so the loop never blocks on DNS.
    ///
    /// A numeric IPv6 address may be bracketed (`"[::1]"`), as in URLs;
    /// anything else with brackets is refused.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the name does not resolve (or
    /// resolves to nothing), its message naming it ("resolve
    /// nosuch.invalid:80: …"); with `InvalidInput` for malformed brackets
    /// such as `"[::1"` or `"[127.0.0.1]"`.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = evloop::EventLoop::new()?;
    /// let addrs = lp.run_until_complete({
    ///     let lp = lp.clone();
    ///     async move { lp.getaddrinfo("localhost", 80).await }
    /// })??;
    /// assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn getaddrinfo(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        if let Some(ip) = numeric_host(host)? {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let name = host.to_owned();
        let found = self
            .run_in_executor(move || (name.as_str(), port).to_socket_addrs().map(Vec::from_iter))
            .await?
            // The resolver's message does not say which name failed.
            .map_err(|e| Error::io_context(e, format_args!("resolve {host}:{port}")))?;
        if found.is_empty() {
            let msg = format!("{host}: the name resolved to no address");
            return Err(io::Error::new(io::ErrorKind::NotFound, msg).into());
        }
        Ok(found)
    }

    /// Looks up the host and service names of `addr` (asyncio's
    /// `getnameinfo`), on the loop's executor. `flags` are `NI_*` flags
    /// from `libc` (e.g. `libc::NI_NUMERICHOST`), 0 for none.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) with the resolver's message if the lookup fails.
    pub async fn getnameinfo(&self, addr: SocketAddr, flags: i32) -> Result<(String, String)> {
        self.run_in_executor(move || lookup_name(addr, flags)).await?
    }
}

/// `host` as a numeric address, if it is one; only a well-formed
/// bracketed IPv6 address may carry brackets.
fn numeric_host(host: &str) -> io::Result<Option<IpAddr>> {
    let malformed = || {
        let msg = format!("{host:?}: brackets must enclose an IPv6 address, as in \"[::1]\"");
        io::Error::new(io::ErrorKind::InvalidInput, msg)
    };
    if let Some(inside) = host.strip_prefix('[') {
        let ip = inside.strip_suffix(']').and_then(|s| s.parse::<Ipv6Addr>().ok()).ok_or_else(malformed)?;
        return Ok(Some(IpAddr::V6(ip)));
    }
    if host.contains(['[', ']']) {
        return Err(malformed());
    }
    Ok(host.parse::<IpAddr>().ok())
}

fn lookup_name(addr: SocketAddr, flags: i32) -> Result<(String, String)> {
    Ok(crate::sys::dns::getnameinfo(addr, flags)?)
}
