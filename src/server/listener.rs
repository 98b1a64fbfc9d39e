//! Listener sockets and process limits, set up before any shard starts.

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `n` SO_REUSEPORT sockets to `addr` (the kernel spreads connections
/// over them). With port 0 the first socket picks the port and the rest join
/// it, so every shard listens on the same address.
pub(super) fn bind_all(
    addr: SocketAddr,
    n: usize,
    backlog: u32,
) -> std::io::Result<(Vec<RawFd>, SocketAddr)> {
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
        fds.push(sock.into_raw_fd());
    }
    Ok((fds, bound))
}

/// Makes sure RLIMIT_MEMLOCK is at least `need` bytes (io_uring registered
/// buffers count against it; glommio itself insists on 512 KiB). Raises the
/// soft limit, and the hard one where the process may (root). The error says
/// what to change when neither works.
#[allow(unsafe_code)]
pub fn raise_memlock(need: usize) -> Result<(), String> {
    let need = need as libc::rlim_t;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(format!("cannot read RLIMIT_MEMLOCK: {}", std::io::Error::last_os_error()));
    }
    if lim.rlim_cur >= need {
        return Ok(());
    }
    let want = libc::rlimit { rlim_cur: need, rlim_max: lim.rlim_max.max(need) };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &want) } == 0 {
        return Ok(());
    }
    Err(format!(
        "RLIMIT_MEMLOCK is {} KiB (hard {} KiB) and io_uring needs {} KiB here; raise it with \
         `ulimit -l {}` or LimitMEMLOCK= in the systemd unit (see tuning/README.md)",
        lim.rlim_cur / 1024,
        lim.rlim_max / 1024,
        need / 1024,
        need.div_ceil(1024)
    ))
}
