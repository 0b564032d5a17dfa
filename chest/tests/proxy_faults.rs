//! The fault-injecting proxy of `common::proxy`, on a loopback echo server.
#![cfg(any(feature = "mysql", feature = "postgres"))]

mod common;

use std::time::{Duration, Instant};

use common::proxy::{commits_in, plaintext, Proxy, SwallowPlan};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ------------------------------------------------------------------------------ the proxy alone

#[test]
fn commits_are_found_in_what_sqlx_sends() {
    // What sqlx 0.9 sends for `Transaction::commit`: a simple query.
    let postgres = b"Q\0\0\0\x0bCOMMIT\0";
    let mysql = b"\x07\0\0\0\x03COMMIT";
    assert_eq!(commits_in(b"", postgres), 1);
    assert_eq!(commits_in(b"", mysql), 1);
    assert_eq!(commits_in(b"", b"Q\0\0\0\x0bcommit\0"), 1);
    // Split across reads: found once, when its last byte comes.
    assert_eq!(commits_in(b"\0\0\x0bCO", b"MMIT\0"), 1);
    assert_eq!(commits_in(b"COMMIT", b"\0"), 0);
    // Not a commit: inside longer words, or not there.
    for bytes in [
        &b"SET TRANSACTION ISOLATION LEVEL READ COMMITTED"[..],
        b"INSERT INTO t_commit_x",
        b"RECOMMIT",
        b"BEGIN",
        b"COMMI",
    ] {
        assert_eq!(
            commits_in(b"", bytes),
            0,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn swallow_plans_pick_as_documented() {
    let (t, f) = (true, false);
    assert_eq!(SwallowPlan::Never.picks(3), [f, f, f]);
    assert_eq!(SwallowPlan::Next(2).picks(4), [t, t, f, f]);
    assert_eq!(SwallowPlan::EveryKth(3).picks(7), [f, f, t, f, f, t, f]);
    let random = |p, seed| SwallowPlan::Random { p, seed }.picks(200);
    assert_eq!(random(0.5, 7), random(0.5, 7), "the same seed, other picks");
    assert_ne!(
        random(0.5, 7),
        random(0.5, 8),
        "another seed, the same picks"
    );
    let picked = random(0.5, 7).iter().filter(|&&p| p).count();
    assert!((60..=140).contains(&picked), "{picked} of 200 at p = 0.5");
    assert!(random(0.0, 1).iter().all(|&p| !p));
    assert!(random(1.0, 1).iter().all(|&p| p));
}

#[tokio::test]
async fn urls_are_pointed_at_the_proxy() {
    let (proxy, url) = Proxy::in_front_of("mysql://root@127.0.0.1:3306/chest_test").await;
    let port = proxy.addr().port();
    assert_eq!(url, format!("mysql://root@127.0.0.1:{port}/chest_test"));
    // No port: the scheme's default; the password, path and query kept.
    let (proxy, url) = Proxy::in_front_of("postgres://u:pw@localhost/db?sslmode=disable").await;
    let port = proxy.addr().port();
    assert_eq!(
        url,
        format!("postgres://u:pw@127.0.0.1:{port}/db?sslmode=disable")
    );
    assert_eq!(
        plaintext("mysql://h:1/d"),
        "mysql://h:1/d?ssl-mode=disabled"
    );
    assert_eq!(
        plaintext("postgres://h:1/d?a=b"),
        "postgres://h:1/d?a=b&sslmode=disable"
    );
}

/// An echo server on loopback, for the whole test.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// Sends `text` and reads its echo back.
async fn echo(stream: &mut TcpStream, text: &[u8]) -> Vec<u8> {
    stream.write_all(text).await.unwrap();
    let mut back = vec![0; text.len()];
    stream.read_exact(&mut back).await.unwrap();
    back
}

/// Whether `stream` has ended (EOF or reset) within a second.
async fn ended(stream: &mut TcpStream) -> bool {
    let mut byte = [0];
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await;
    matches!(read, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn the_proxy_relays_delays_cuts_refuses_and_stops() {
    let proxy = Proxy::start(&echo_server().await).await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut client, b"hello").await, b"hello");

    proxy.delay_answers(Duration::from_millis(100));
    let start = Instant::now();
    assert_eq!(echo(&mut client, b"slow").await, b"slow");
    assert!(start.elapsed() >= Duration::from_millis(100), "not delayed");
    proxy.delay_answers(Duration::ZERO);
    let stats = proxy.stats();
    assert_eq!(
        (stats.accepted, stats.bytes_up, stats.bytes_down),
        (1, 9, 9)
    );

    proxy.cut_all();
    assert!(ended(&mut client).await, "the cut connection is still open");
    assert_eq!((proxy.stats().cut, proxy.open_connections()), (1, 0));

    proxy.refuse_for(Duration::from_millis(300));
    let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(
        ended(&mut refused).await,
        "a connection during the outage is open"
    );
    assert_eq!(proxy.stats().refused, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut after, b"back").await, b"back");

    let addr = proxy.addr();
    drop(proxy);
    assert!(
        ended(&mut after).await,
        "the dropped proxy left a connection open"
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "the dropped proxy still accepts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
