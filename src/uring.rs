//! What every glommio executor in this process needs from the kernel: the
//! registered I/O memory each one asks for, and the RLIMIT_MEMLOCK that has to
//! cover it. Shared by the server's shards, the load generator's threads and
//! the one-shot executors of the CLI and admin (Redis writes), so none of them
//! reaches into another's module for it.

/// Registered I/O memory per executor. Nothing here does DMA file I/O, so
/// this only needs to satisfy glommio's allocator; small keeps RLIMIT_MEMLOCK
/// needs low (executors × this).
pub const IO_MEMORY: usize = 128 << 10;

/// What glommio itself insists on beyond its executors' I/O memory.
pub const BASE_MEMLOCK: usize = 512 << 10;

/// RLIMIT_MEMLOCK needed by `executors` glommio executors.
pub fn memlock_for(executors: usize) -> usize {
    executors * IO_MEMORY + BASE_MEMLOCK
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
