//! Listener sockets, bound before any shard starts so "address in use" is
//! reported before a thread runs.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `n` SO_REUSEPORT sockets to `addr` (the kernel spreads connections
/// over them). With port 0 the first socket picks the port and the rest join
/// it, so every shard listens on the same address. A failure part-way closes
/// the sockets already bound (they are owned until handed out).
pub(super) fn bind_all(
    addr: SocketAddr,
    n: usize,
    backlog: u32,
) -> std::io::Result<(Vec<OwnedFd>, SocketAddr)> {
    let mut fds = Vec::with_capacity(n);
    let mut bound = addr;
    for i in 0..n {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        sock.set_reuse_port(true)?;
        sock.set_nonblocking(true)?;
        sock.bind(&bound.into())?;
        sock.listen(backlog.min(i32::MAX as u32) as i32)?;
        if i == 0 {
            bound = sock
                .local_addr()?
                .as_socket()
                .ok_or_else(|| std::io::Error::other("listener has no IP address"))?;
        }
        fds.push(OwnedFd::from(sock));
    }
    Ok((fds, bound))
}
