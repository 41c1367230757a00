//! Per-connection limits beyond the global connection cap: a minimum send rate (a client that
//! asks for a large file and then reads it slower than `--min-send-rate` over
//! `--send-timeout`, or not at all, is disconnected instead of holding a slot for the
//! connection's lifetime) and a cap on the connections one peer holds at once.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How fast a client must take what the server has to send it.
#[derive(Debug, Clone, Copy)]
pub struct SendRate {
    /// Bytes per second, measured over [`Self::window`]; 0 disables the check.
    pub min_bytes_per_sec: u64,
    /// The window: a connection whose writes stay blocked for this long while fewer than
    /// `min_bytes_per_sec × window` bytes went out is closed.
    pub window: Duration,
}

/// What the watchdog of one connection knows of its writes.
#[derive(Debug, Default)]
struct SendState {
    /// Start of the current measurement: the first write the socket refused (the client is
    /// slower than the server) since the client last caught up.
    since: Option<Instant>,
    /// Bytes written since `since`.
    bytes: u64,
    /// The last write was refused (the socket buffer is full): data is waiting for the client.
    blocked: bool,
}

/// Shared between a connection's stream ([`Watched`]) and its watchdog ([`SendProgress::stalled`]).
#[derive(Debug, Default)]
pub struct SendProgress(Mutex<SendState>);

impl SendProgress {
    fn lock(&self) -> std::sync::MutexGuard<'_, SendState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note<T>(&self, poll: &Poll<io::Result<T>>, written: impl Fn(&T) -> usize) {
        let mut s = self.lock();
        match poll {
            Poll::Pending => {
                s.blocked = true;
                if s.since.is_none() {
                    s.since = Some(Instant::now());
                    s.bytes = 0;
                }
            }
            Poll::Ready(Ok(n)) => {
                s.blocked = false;
                if s.since.is_some() {
                    s.bytes = s.bytes.saturating_add(written(n) as u64);
                }
            }
            Poll::Ready(Err(_)) => {}
        }
    }

    /// One check at `now`: true when data has waited for the client for a whole window in
    /// which it took less than the minimum. A client that caught up (no write waiting) ends
    /// the measurement; one fast enough starts a new window.
    fn check(&self, now: Instant, rate: SendRate) -> bool {
        let mut s = self.lock();
        let Some(since) = s.since else {
            return false;
        };
        if !s.blocked {
            s.since = None;
            return false;
        }
        let elapsed = now.saturating_duration_since(since);
        if elapsed < rate.window {
            return false;
        }
        let needed = u128::from(rate.min_bytes_per_sec) * elapsed.as_millis() / 1000;
        if u128::from(s.bytes) < needed {
            return true;
        }
        s.since = Some(now);
        s.bytes = 0;
        false
    }

    /// Completes when the connection is too slow: checked a few times per window, so a
    /// client that reads nothing is closed 1 to 2.25 windows after the server's writes first
    /// blocked (the kernel growing the socket's send buffer just after can pass for progress
    /// in the first window).
    pub async fn stalled(&self, rate: SendRate) {
        if rate.min_bytes_per_sec == 0 {
            return std::future::pending().await;
        }
        let tick = (rate.window / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            tokio::time::sleep(tick).await;
            if self.check(Instant::now(), rate) {
                return;
            }
        }
    }
}

/// A stream whose writes are reported to a [`SendProgress`].
pub struct Watched<S> {
    inner: S,
    progress: Arc<SendProgress>,
}

impl<S> Watched<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, progress: Arc<SendProgress>) -> Self {
        Self { inner, progress }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress.note(&poll, |n| *n);
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress.note(&poll, |n| *n);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The connections each peer holds. A peer is an IPv4 address, or an IPv6 /64 (what one
/// subscriber usually gets: per address, one host could open connections without end).
#[derive(Debug, Default)]
pub struct PeerConnections(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted for its peer until dropped.
#[derive(Debug)]
pub struct PeerSlot {
    peers: Arc<PeerConnections>,
    key: IpAddr,
}

impl PeerConnections {
    /// Counts a connection from `ip`, unless its peer already holds `cap`.
    pub fn enter(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<PeerSlot> {
        let key = peer_key(ip);
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(key).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            key,
        })
    }

    /// Connections `ip`'s peer holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&peer_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.peers.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// An IPv4 address (also when mapped into IPv6), or the /64 of an IPv6 address.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: SendRate = SendRate {
        min_bytes_per_sec: 1000,
        window: Duration::from_secs(10),
    };

    fn blocked(p: &SendProgress) {
        p.note::<usize>(&Poll::Pending, |n| *n);
    }

    fn wrote(p: &SendProgress, n: usize) {
        p.note(&Poll::Ready(Ok(n)), |n| *n);
    }

    #[test]
    fn a_stalled_or_trickling_client_is_too_slow_a_fast_or_idle_one_is_not() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Idle: nothing waits for the client.
        let idle = SendProgress::default();
        wrote(&idle, 100);
        assert!(!idle.check(t0 + s(60), RATE));
        // Stalled: blocked, nothing taken for a window.
        let stalled = SendProgress::default();
        blocked(&stalled);
        let start = stalled.lock().since.unwrap();
        assert!(!stalled.check(start + s(9), RATE));
        assert!(stalled.check(start + s(10), RATE));
        // Trickling: 500 bytes/s while blocked.
        let trickle = SendProgress::default();
        blocked(&trickle);
        let start = trickle.lock().since.unwrap();
        for _ in 0..10 {
            wrote(&trickle, 500);
            blocked(&trickle);
        }
        assert!(trickle.check(start + s(10), RATE));
        // Fast enough: a new window starts; caught up: the measurement ends.
        let fast = SendProgress::default();
        blocked(&fast);
        let start = fast.lock().since.unwrap();
        wrote(&fast, 20_000);
        blocked(&fast);
        assert!(!fast.check(start + s(10), RATE));
        assert_eq!(fast.lock().bytes, 0);
        wrote(&fast, 10);
        assert!(!fast.check(start + s(30), RATE));
        assert!(fast.lock().since.is_none());
    }

    #[test]
    fn peers_are_counted_per_ipv4_address_and_ipv6_64() {
        let peers = Arc::new(PeerConnections::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let slots: Vec<_> = (0..2).map(|_| peers.enter(a, 2).unwrap()).collect();
        assert!(peers.enter(mapped, 2).is_none());
        assert!(peers.enter("192.0.2.2".parse().unwrap(), 2).is_some());
        drop(slots);
        assert_eq!(peers.held(a), 0);
        let v6: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let _s = peers.enter(v6, 1).unwrap();
        assert!(peers
            .enter("2001:db8:1:2:ffff::9".parse().unwrap(), 1)
            .is_none());
        assert!(peers.enter("2001:db8:1:3::1".parse().unwrap(), 1).is_some());
    }
}
