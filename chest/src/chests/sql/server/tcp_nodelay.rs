/// sqlx 0.9.0 leaves Nagle's algorithm on for its TCP connections (sqlx issue 4335: the fix, pull
/// request 4336, is merged but not released). A statement whose last TCP segment is short then
/// waits for the server's delayed ACK, about 40 ms: 1,000-record writes into PostgreSQL ran at 27k
/// records/s over TCP here, 316k over a Unix socket. Until sqlx sets `TCP_NODELAY` itself, each new
/// pool connection sets it on the process's TCP sockets whose peer has the server's port (that
/// includes the new one; on others to that port it is harmless). Remove once sqlx sets it.
/// Sets `TCP_NODELAY` on this process's TCP sockets connected to `port`. Best effort: on
/// systems without `/proc/self/fd`, or on any error, it does nothing.
#[cfg(target_os = "linux")]
pub(crate) fn set_for_peer_port(port: u16) {
    use std::os::fd::{BorrowedFd, RawFd};
    use std::os::unix::ffi::OsStrExt;

    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str().as_bytes().starts_with(b"socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only passed to getpeername and setsockopt below. If
        // another thread closed it meanwhile, they fail (EBADF); if the number was reused,
        // they reach the new descriptor, where a read of the peer changes nothing and
        // TCP_NODELAY is set only on a TCP socket to the server's port. No memory is shared.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if peer.is_some_and(|peer| peer.port() == port) {
            if let Err(error) = socket.set_tcp_nodelay(true) {
                tracing::debug!(target: "chest", %error, "could not set TCP_NODELAY");
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_for_peer_port(_port: u16) {}
