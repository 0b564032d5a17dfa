//! The SQL chests' connections have Nagle's algorithm off (`TCP_NODELAY`), which sqlx 0.9.0 no
//! longer sets: without it a write whose last TCP segment is short waits ~40 ms for the server's
//! delayed ACK. One test in its own binary, so that no other test opens connections to the same
//! servers meanwhile.
#![cfg(any(feature = "mysql", feature = "postgres"))]

mod common;
// Only `Admin` and `unique_table` are used here; the scenarios are the server tests'.
#[allow(unused_imports, unused_macros)]
mod sql_servers;

use std::collections::BTreeSet;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use chest::{Chest, Record};
use sql_servers::{unique_table, Admin};

/// This process's TCP sockets whose peer has port `port`: (descriptor, TCP_NODELAY).
fn sockets_to(port: u16) -> BTreeSet<(RawFd, bool)> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str().as_bytes().starts_with(b"socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: this test's tasks do not close descriptors while it looks.
        let fd_ref = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd_ref);
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if peer.is_some_and(|peer| peer.port() == port) {
            found.insert((fd, socket.tcp_nodelay().unwrap()));
        }
    }
    found
}

fn port_of(url: &str) -> u16 {
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    host_port.rsplit(':').next().unwrap().parse().unwrap()
}

/// Builds a chest on `url` with 3 connections, writes through all of them at once, and checks
/// that every connection it opened has `TCP_NODELAY` on.
async fn check<C: Chest>(url: &str, build: impl AsyncFnOnce(&str) -> C) {
    let port = port_of(url);
    let before = sockets_to(port);
    let chest = build(url).await;
    let records: Vec<Record> = (0..1_000)
        .map(|i| Record::new(format!("req-{i}"), "n", i, "GET", Some("/nodelay")))
        .collect();
    let writes = (0..3).map(|_| chest.write(&records));
    for result in futures_util::future::join_all(writes).await {
        result.unwrap();
    }
    let new: Vec<_> = sockets_to(port)
        .into_iter()
        .filter(|(fd, _)| !before.iter().any(|(old, _)| old == fd))
        .collect();
    assert!(!new.is_empty(), "no new connection to port {port}");
    assert!(
        new.iter().all(|(_, nodelay)| *nodelay),
        "connections without TCP_NODELAY: {new:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_connections_have_nagle_off() {
    #[cfg(feature = "postgres")]
    if let Some(url) = common::service_url("CHEST_TEST_POSTGRES_URL") {
        use chest::chests::postgres::PostgresChest;
        let table = unique_table("nodelay");
        check(&url, async |url: &str| {
            let chest = PostgresChest::builder(url).table(&table).max_connections(3);
            chest.build().await.unwrap()
        })
        .await;
        Admin::postgres(&url).await.drop_table(&table).await;
    }
    #[cfg(feature = "mysql")]
    if let Some(url) = common::service_url("CHEST_TEST_MYSQL_URL") {
        use chest::chests::mysql::MySqlChest;
        let table = unique_table("nodelay");
        check(&url, async |url: &str| {
            let chest = MySqlChest::builder(url).table(&table).max_connections(3);
            chest.build().await.unwrap()
        })
        .await;
        Admin::mysql(&url).await.drop_table(&table).await;
    }
}
