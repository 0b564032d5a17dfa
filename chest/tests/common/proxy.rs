//! A fault-injecting TCP proxy for the tests (issue 13): a test puts it between a chest and a
//! real server on loopback, then breaks the link in the ways a network and a server can.
//!
//! ```ignore
//! let (proxy, url) = Proxy::in_front_of("postgres://postgres@127.0.0.1:5432/chest_test").await;
//! // `url` is the same with the proxy's port: a chest built on it talks through the proxy.
//! proxy.swallow_commits(SwallowPlan::Next(1)); // the server commits, the client never hears it
//! proxy.cut_all();                             // every open connection closed, now
//! proxy.refuse_for(Duration::from_secs(1));    // an outage: cut, and new connections closed
//! proxy.delay_answers(Duration::from_millis(300)); // each chunk of the server's answers held
//! let stats = proxy.stats();                   // connections, bytes, commits seen and swallowed
//! ```
//!
//! Each proxy listens on a port of its own on 127.0.0.1 and has no global state. Dropping it
//! stops its tasks and closes its connections. The background tasks never panic: a failure is
//! logged (stderr) and the connection closed.
//!
//! Commits are found by the ASCII keyword `COMMIT` (any case, as a whole word) in the client's
//! bytes. sqlx 0.9 sends it as a simple query: PostgreSQL `Q`, length, `COMMIT\0`; MySQL a
//! COM_QUERY packet (length, sequence, `0x03`, `COMMIT`). A value or name in the client's
//! statements that holds the word alone counts as a commit too: tests must not send one. The
//! proxy sees commits only on a plaintext connection: point the chest at [`plaintext`]`(url)`
//! (sqlx prefers TLS when the server offers it, as the test PostgreSQL does).

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use socket2::{SockRef, Socket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The keyword that marks a commit in the client's bytes.
const COMMIT: &[u8] = b"COMMIT";

/// Which commits the proxy swallows: it forwards the commit, drops the server's answer and
/// closes that client connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SwallowPlan {
    /// None (the default).
    Never,
    /// The next `n` commits.
    Next(u64),
    /// Every `k`-th commit from now on: the k-th, the 2k-th, ...
    EveryKth(u64),
    /// Each commit with probability `p` (0 to 1), drawn from an RNG seeded with `seed`: the same
    /// seed swallows the same commits.
    Random { p: f64, seed: u64 },
}

impl SwallowPlan {
    /// Which of the next `commits` commits this plan swallows: what a proxy given it will do.
    pub fn picks(self, commits: usize) -> Vec<bool> {
        let mut swallow = Swallow::new(self);
        (0..commits).map(|_| swallow.next()).collect()
    }
}

/// A [`SwallowPlan`] under way.
struct Swallow {
    plan: SwallowPlan,
    seen: u64,
    rng: StdRng,
}

impl Swallow {
    fn new(plan: SwallowPlan) -> Swallow {
        let seed = match plan {
            SwallowPlan::Random { p, seed } => {
                assert!((0.0..=1.0).contains(&p), "probability {p} not in 0..=1");
                seed
            }
            _ => 0,
        };
        Swallow {
            plan,
            seen: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Whether to swallow the next commit.
    fn next(&mut self) -> bool {
        self.seen += 1;
        match &mut self.plan {
            SwallowPlan::Never | SwallowPlan::Next(0) => false,
            SwallowPlan::Next(n) => {
                *n -= 1;
                true
            }
            SwallowPlan::EveryKth(k) => *k > 0 && self.seen.is_multiple_of(*k),
            SwallowPlan::Random { p, .. } => self.rng.random_bool(*p),
        }
    }
}

/// What a proxy has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client connections accepted and relayed (refused ones not included).
    pub accepted: u64,
    /// Client connections closed at once during an outage ([`Proxy::refuse_for`]).
    pub refused: u64,
    /// Relayed connections that could not reach the server (closed at once).
    pub upstream_failures: u64,
    /// Connections closed by [`Proxy::cut_all`] or [`Proxy::refuse_for`].
    pub cut: u64,
    /// Bytes forwarded from the clients to the server.
    pub bytes_up: u64,
    /// Bytes forwarded from the server to the clients (swallowed answers not included).
    pub bytes_down: u64,
    /// Commits seen in the clients' bytes.
    pub commits_seen: u64,
    /// Commits whose answer was swallowed.
    pub commits_swallowed: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    upstream_failures: AtomicU64,
    cut: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    commits_seen: AtomicU64,
    commits_swallowed: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A lock that a panicking holder cannot poison for the others (no task panics with one, but the
/// background tasks must not panic even then).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The open connections: the client's and the server's socket of each (duplicated descriptors,
/// so they can be shut down from outside the connection's task).
#[derive(Default)]
struct Open {
    /// Bumped by each cut: a connection accepted before it must not be registered after it.
    generation: u64,
    sockets: HashMap<u64, [Socket; 2]>,
}

/// The state a proxy shares with its tasks.
struct Shared {
    upstream: Vec<SocketAddr>,
    counters: Counters,
    refuse_until: Mutex<Option<Instant>>,
    delay: Mutex<Duration>,
    swallow: Mutex<Swallow>,
    open: Mutex<Open>,
    next_id: AtomicU64,
}

/// Shuts both directions of `socket` now (its peer reads EOF) and makes its close a reset
/// (`SO_LINGER` 0: what the peer sends after is refused, nothing lingers in `TIME_WAIT`).
fn reset(socket: SockRef<'_>) {
    let _ = socket.set_linger(Some(Duration::ZERO));
    let _ = socket.shutdown(Shutdown::Both);
}

impl Shared {
    fn refusing(&self) -> bool {
        lock(&self.refuse_until).is_some_and(|until| Instant::now() < until)
    }

    /// Closes every open connection (both sockets, `reset`); returns how many.
    fn close_all(&self) -> u64 {
        let mut open = lock(&self.open);
        open.generation += 1;
        let closed = open.sockets.len() as u64;
        for (_, sockets) in open.sockets.drain() {
            sockets.iter().for_each(|s| reset(SockRef::from(s)));
        }
        closed
    }

    /// Closes connection `id` (both sockets, `reset`).
    fn close(&self, id: u64) {
        if let Some(sockets) = lock(&self.open).sockets.remove(&id) {
            sockets.iter().for_each(|s| reset(SockRef::from(s)));
        }
    }

    /// Registers connection `id`, unless a cut came after `generation` (then it is closed).
    fn register(&self, id: u64, generation: u64, client: &TcpStream, server: &TcpStream) -> bool {
        let dup = |s: &TcpStream| SockRef::from(s).try_clone();
        let (client_dup, server_dup) = match (dup(client), dup(server)) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("proxy: cannot duplicate a socket, closing the connection: {e}");
                return false;
            }
        };
        let mut open = lock(&self.open);
        if open.generation != generation {
            return false;
        }
        open.sockets.insert(id, [client_dup, server_dup]);
        true
    }
}

/// Takes connection `id` out of the open ones when its task ends (or is aborted).
struct Registered<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.shared.open).sockets.remove(&self.id);
    }
}

/// A fault-injecting TCP proxy on 127.0.0.1 in front of one server: see the module docs.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 to the server at `upstream` (`host:port`, loopback
    /// only). Panics (in the test, not in a task) if it cannot listen or `upstream` is not a
    /// loopback address.
    pub async fn start(upstream: &str) -> Proxy {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host(upstream)
            .await
            .unwrap_or_else(|e| panic!("proxy upstream {upstream}: {e}"))
            .collect();
        assert!(
            !resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback()),
            "proxy upstream {upstream} is not loopback only: {resolved:?}"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listen");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream: resolved,
            counters: Counters::default(),
            refuse_until: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            swallow: Mutex::new(Swallow::new(SwallowPlan::Never)),
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Proxy { addr, shared, task }
    }

    /// A proxy to the server of `server_url` (`scheme://[user[:password]@]host[:port]/...`; the
    /// scheme's default port when it has none), and that URL pointed at the proxy.
    pub async fn in_front_of(server_url: &str) -> (Proxy, String) {
        let host_port = &server_url[host_port_span(server_url)];
        let upstream = if host_port
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty())
        {
            host_port.to_owned()
        } else {
            let scheme = server_url.split("://").next().unwrap_or_default();
            let port = match scheme {
                "mysql" | "mariadb" => 3306,
                "postgres" | "postgresql" => 5432,
                _ => panic!("no port in {scheme}:// URL and no default for the scheme"),
            };
            format!("{}:{port}", host_port.trim_end_matches(':'))
        };
        let proxy = Proxy::start(&upstream).await;
        let url = proxy.url(server_url);
        (proxy, url)
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `server_url` with its `host:port` replaced by the proxy's (user, password, path and query
    /// kept): `mysql://root@127.0.0.1:3306/chest_test` → `mysql://root@127.0.0.1:PORT/chest_test`.
    pub fn url(&self, server_url: &str) -> String {
        let span = host_port_span(server_url);
        format!(
            "{}{}{}",
            &server_url[..span.start],
            self.addr,
            &server_url[span.end..]
        )
    }

    /// Closes every open connection now, both sides (`reset`): when this returns, the client
    /// and the server each read EOF, and what they send after is refused. New connections are
    /// accepted as before.
    pub fn cut_all(&self) {
        let closed = self.shared.close_all();
        add(&self.shared.counters.cut, closed);
    }

    /// An outage: cuts every open connection now ([`cut_all`](Self::cut_all)), and for `outage`
    /// closes each new connection as soon as it is accepted, before the server is reached. (Not
    /// a refused `connect`: sqlx's pool retries a refused connect until its acquire timeout, so
    /// the write would wait out the outage instead of failing.)
    pub fn refuse_for(&self, outage: Duration) {
        *lock(&self.shared.refuse_until) = Some(Instant::now() + outage);
        self.cut_all();
    }

    /// From now on, swallows the server's answer to the commits `plan` picks (counted from now):
    /// the commit reaches the server, its answer is dropped, and that client connection closed.
    /// Only commits sent in plaintext are seen: see [`plaintext`].
    pub fn swallow_commits(&self, plan: SwallowPlan) {
        *lock(&self.shared.swallow) = Swallow::new(plan);
    }

    /// Holds each chunk of the server's bytes for `delay` before passing it to the client
    /// (`Duration::ZERO`: no delay, the default).
    pub fn delay_answers(&self, delay: Duration) {
        *lock(&self.shared.delay) = delay;
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            upstream_failures: get(&c.upstream_failures),
            cut: get(&c.cut),
            bytes_up: get(&c.bytes_up),
            bytes_down: get(&c.bytes_down),
            commits_seen: get(&c.commits_seen),
            commits_swallowed: get(&c.commits_swallowed),
        }
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.open).sockets.len()
    }
}

impl Drop for Proxy {
    /// Stops accepting (the accept task owns the connection tasks, which stop with it) and
    /// closes every open connection at once.
    fn drop(&mut self) {
        self.task.abort();
        self.shared.close_all();
    }
}

/// `url` with TLS turned off (`sslmode=disable` for PostgreSQL, `ssl-mode=disabled` for MySQL),
/// so that the proxy can see the commits; other URLs as they are.
pub fn plaintext(url: &str) -> String {
    let param = if url.starts_with("postgres") {
        "sslmode=disable"
    } else if url.starts_with("mysql") || url.starts_with("mariadb") {
        "ssl-mode=disabled"
    } else {
        return url.to_owned();
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

/// The byte range of `url`'s `host:port` (after `scheme://` and `user:password@`).
fn host_port_span(url: &str) -> std::ops::Range<usize> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let host = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    host..end
}

/// How many commits end in `chunk`, the client's next bytes after `tail` (the last bytes before
/// them): `COMMIT` in any case, not inside a longer word. At the end of `chunk` it counts (a
/// MySQL packet ends with it), so `COMMIT|TED` split across reads would count.
pub fn commits_in(tail: &[u8], chunk: &[u8]) -> usize {
    let bytes = [tail, chunk].concat();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    bytes
        .windows(COMMIT.len())
        .enumerate()
        .filter(|(i, window)| {
            i + COMMIT.len() > tail.len()
                && window.eq_ignore_ascii_case(COMMIT)
                && (*i == 0 || !word(&bytes[i - 1]))
                && !bytes.get(i + COMMIT.len()).is_some_and(word)
        })
        .count()
}

/// Accepts connections until the proxy is dropped (the task aborted, and with it the
/// connections' tasks, which this task's `JoinSet` owns).
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) if shared.refusing() => {
                    add(&shared.counters.refused, 1);
                    reset(SockRef::from(&client));
                }
                Ok((client, _)) => {
                    add(&shared.counters.accepted, 1);
                    let generation = lock(&shared.open).generation;
                    connections.spawn(relay(client, shared.clone(), generation));
                }
                Err(e) => {
                    // Such as too many open files: wait a little rather than spin.
                    eprintln!("proxy: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = ended {
                    eprintln!("proxy: a connection task failed: {e}");
                }
            }
        }
    }
}

/// Relays one client connection to the server until either side ends or the proxy closes it.
async fn relay(client: TcpStream, shared: Arc<Shared>, generation: u64) {
    let server = match TcpStream::connect(&shared.upstream[..]).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("proxy: cannot reach {:?}: {e}", shared.upstream);
            add(&shared.counters.upstream_failures, 1);
            reset(SockRef::from(&client));
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    if !shared.register(id, generation, &client, &server) {
        // Cut while it was connecting to the server.
        add(&shared.counters.cut, 1);
        reset(SockRef::from(&client));
        reset(SockRef::from(&server));
        return;
    }
    let _registered = Registered {
        shared: &shared,
        id,
    };
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    let swallowing = AtomicBool::new(false);
    let ended = tokio::select! {
        ended = up(from_client, to_server, &shared, &swallowing) => ended,
        ended = down(from_server, to_client, &shared, &swallowing, id) => ended,
    };
    if let Err(e) = ended {
        // Resets and broken pipes are how cut connections end.
        if !matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::NotConnected
        ) {
            eprintln!("proxy: connection {id} ended: {e}");
        }
    }
}

/// Client → server: forwards the bytes, counting commits and marking the connection
/// `swallowing` (before the commit is forwarded) when the plan picks one.
async fn up(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    swallowing: &AtomicBool,
) -> io::Result<()> {
    let mut buf = vec![0; 64 << 10];
    let mut tail = Vec::with_capacity(2 * COMMIT.len());
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let chunk = &buf[..n];
        for _ in 0..commits_in(&tail, chunk) {
            add(&shared.counters.commits_seen, 1);
            if lock(&shared.swallow).next() {
                swallowing.store(true, Ordering::SeqCst);
            }
        }
        tail.extend_from_slice(&chunk[n.saturating_sub(COMMIT.len())..]);
        tail.drain(..tail.len().saturating_sub(COMMIT.len()));
        to.write_all(chunk).await?;
        add(&shared.counters.bytes_up, n as u64);
    }
}

/// Server → client: forwards the bytes (each chunk held for the delay), or, once the connection
/// is `swallowing`, drops the server's answer and closes the connection.
async fn down(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    swallowing: &AtomicBool,
    id: u64,
) -> io::Result<()> {
    let mut buf = vec![0; 64 << 10];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if swallowing.load(Ordering::SeqCst) {
            // The commit went up before these bytes came: they are its answer (the client
            // waits for each answer before it sends more), so the server has committed.
            add(&shared.counters.commits_swallowed, 1);
            shared.close(id);
            return Ok(());
        }
        let delay = *lock(&shared.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        to.write_all(&buf[..n]).await?;
        add(&shared.counters.bytes_down, n as u64);
    }
}
