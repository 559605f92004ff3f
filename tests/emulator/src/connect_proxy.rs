//! A small HTTP CONNECT proxy for tests: it opens TCP tunnels to loopback destinations
//! only, counts them by destination, can demand `Proxy-Authorization: Basic`, and can
//! stand in for a host name the client cannot reach by itself (an alias), so that a test
//! knows a service was reached only through the proxy.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use mcas_emulator::connect_proxy::ConnectProxy;
//! let proxy = ConnectProxy::start().await?;
//! proxy.require_credentials("agent", "proxy-Passw0rd");
//! println!("proxy.url = {}", proxy.url());
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

/// The longest request head the proxy reads.
const HEAD_LIMIT: usize = 8 << 10;

/// What the proxy did, for tests to check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Tunnels opened, by destination as the client asked for it (`host:port`).
    pub tunnels: BTreeMap<String, u64>,
    /// CONNECT requests answered 407 (credentials missing or wrong).
    pub refused_credentials: u64,
    /// Requests answered otherwise than 200 (not CONNECT, not loopback, unreachable).
    pub refused: u64,
}

impl ProxyStats {
    /// Tunnels opened to `destination` (`host:port`).
    pub fn tunnels_to(&self, destination: &str) -> u64 {
        self.tunnels.get(destination).copied().unwrap_or(0)
    }
}

struct State {
    /// `Basic` credentials demanded, base64 of `user:password`; `None` demands none.
    credentials: Option<String>,
    /// Destinations the proxy connects elsewhere: `host:port` as asked -> address.
    aliases: HashMap<String, SocketAddr>,
    stats: ProxyStats,
}

struct Shared {
    addr: SocketAddr,
    state: Mutex<State>,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running CONNECT proxy on 127.0.0.1. Cheap to clone: clones share it.
#[derive(Clone)]
pub struct ConnectProxy {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for ConnectProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectProxy")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl ConnectProxy {
    /// Binds 127.0.0.1 on a free port and serves in the background of the current tokio
    /// runtime, demanding no credentials.
    pub async fn start() -> Result<ConnectProxy> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("binding the proxy")?;
        let (shutdown, stop) = watch::channel(false);
        let inner = Arc::new(Shared {
            addr: listener.local_addr()?,
            state: Mutex::new(State {
                credentials: None,
                aliases: HashMap::new(),
                stats: ProxyStats::default(),
            }),
            shutdown,
        });
        tokio::spawn(accept_loop(listener, inner.clone(), stop));
        Ok(ConnectProxy { inner })
    }

    /// `http://127.0.0.1:PORT`: the agent's `proxy.url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// From now on, a CONNECT without `Proxy-Authorization: Basic` of these is answered
    /// 407 Proxy Authentication Required.
    pub fn require_credentials(&self, username: &str, password: &str) {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        self.inner.state().credentials = Some(encoded);
    }

    /// A CONNECT to `destination` (`host:port`, as the client asks for it) is tunnelled to
    /// `to` instead: the client reaches `to` under that name only through the proxy.
    pub fn alias(&self, destination: &str, to: SocketAddr) {
        self.inner
            .state()
            .aliases
            .insert(destination.to_string(), to);
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        self.inner.state().stats.clone()
    }

    /// Stops accepting; tunnels open stay until their ends close.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|&s| s) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(client, &shared).await {
                        debug!("proxy: connection from {peer}: {e:#}");
                    }
                });
            }
            Err(e) => {
                debug!("proxy: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One client connection: its CONNECT request, then the tunnel.
async fn serve(client: TcpStream, shared: &Shared) -> Result<()> {
    let mut reader = BufReader::new(client);
    let mut head = Vec::new();
    // The request head, line by line, within HEAD_LIMIT.
    loop {
        let before = head.len();
        let read = (&mut reader)
            .take((HEAD_LIMIT - before) as u64)
            .read_until(b'\n', &mut head)
            .await?;
        if read == 0 || head.len() >= HEAD_LIMIT {
            return answer(reader.get_mut(), shared, 400, "Bad Request", false).await;
        }
        if head[before..] == *b"\r\n" || head[before..] == *b"\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let request: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
    let (method, destination) = match request.as_slice() {
        [method, destination, _version] => (*method, destination.to_string()),
        _ => return answer(reader.get_mut(), shared, 400, "Bad Request", false).await,
    };
    if method != "CONNECT" {
        return answer(reader.get_mut(), shared, 405, "Method Not Allowed", false).await;
    }
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_string());
    let (wanted, alias) = {
        let st = shared.state();
        (
            st.credentials.clone(),
            st.aliases.get(&destination).copied(),
        )
    };
    if let Some(wanted) = wanted {
        let given = authorization
            .as_deref()
            .and_then(|v| v.strip_prefix("Basic "))
            .map(str::trim);
        if given != Some(wanted.as_str()) {
            shared.state().stats.refused_credentials += 1;
            return answer(
                reader.get_mut(),
                shared,
                407,
                "Proxy Authentication Required",
                true,
            )
            .await;
        }
    }
    // Loopback only: the tests' network rule, whatever a client asks for.
    let target = match alias {
        Some(addr) => Some(addr),
        None => tokio::net::lookup_host(destination.as_str())
            .await
            .ok()
            .and_then(|mut addrs| addrs.find(|a| a.ip().is_loopback())),
    };
    let Some(target) = target else {
        return answer(reader.get_mut(), shared, 403, "Forbidden", false).await;
    };
    let mut upstream = match TcpStream::connect(target).await {
        Ok(upstream) => upstream,
        Err(_) => return answer(reader.get_mut(), shared, 502, "Bad Gateway", false).await,
    };
    *shared.state().stats.tunnels.entry(destination).or_default() += 1;
    reader
        .get_mut()
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    // Bytes the client sent after the head (none, for a client that waits for the 200).
    let early = reader.buffer().to_vec();
    upstream.write_all(&early).await?;
    let mut client = reader.into_inner();
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Answers a refused request and ends the connection.
async fn answer(
    client: &mut TcpStream,
    shared: &Shared,
    status: u16,
    reason: &str,
    challenge: bool,
) -> Result<()> {
    if status != 407 {
        shared.state().stats.refused += 1;
    }
    let challenge = if challenge {
        "Proxy-Authenticate: Basic realm=\"nss-agent tests\"\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\n{challenge}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await?;
    Ok(())
}
