//! Name resolution off the loop thread: `getaddrinfo` and `getnameinfo`
//! run on the loop's executor, as asyncio does.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::error::Result;
use crate::runtime::event_loop::EventLoop;

impl EventLoop {
    /// Resolves `host` and `port` to socket addresses (asyncio's
    /// `getaddrinfo`), in the resolver's order. Numeric addresses are
    /// answered at once; names are looked up with the system resolver on
    /// the loop's executor, so the loop never blocks on DNS.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the name does not resolve (or resolves to nothing).
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
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let name = host.to_owned();
        let found = self
            .run_in_executor(move || (name.as_str(), port).to_socket_addrs().map(Vec::from_iter))
            .await??;
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

fn lookup_name(addr: SocketAddr, flags: i32) -> Result<(String, String)> {
    Ok(crate::sys::dns::getnameinfo(addr, flags)?)
}
