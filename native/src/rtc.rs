//! WebRTC data channels for WebTorrent peers, on webrtc-rs (`webrtc` 0.21).
//!
//! WebTorrent peers meet through WebSocket trackers, which carry one complete (non-trickle) SDP
//! offer and one answer per connection; after that the two peers speak the ordinary BitTorrent
//! wire protocol over a single ordered, reliable data channel. This module deals only with the
//! SDP strings and the channel:
//!
//! - [`create_offer`] builds a peer connection with one data channel, waits for ICE gathering
//!   and returns the offer SDP with a [`PendingOffer`]; [`PendingOffer::accept_answer`] takes the
//!   remote answer and resolves once the channel is open.
//! - [`answer_offer`] answers a remote offer and returns the answer SDP with a
//!   [`PendingAnswer`]; [`PendingAnswer::wait_open`] resolves once the remote's channel is open.
//! - [`DataChannelStream`] is the open channel as a byte stream
//!   ([`AsyncRead`] + [`AsyncWrite`]), so the TCP peer code can drive it unchanged.
//!
//! ```no_run
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use webtorrent::rtc::{answer_offer, create_offer, RtcConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RtcConfig::loopback();
//! let (offer, offer_sdp) = create_offer(&config).await?;
//! // ... the offer travels through a tracker; the remote answers it ...
//! let (answer, answer_sdp) = answer_offer(&config, &offer_sdp).await?;
//! let (mut a, mut b) = tokio::try_join!(offer.accept_answer(&answer_sdp), answer.wait_open())?;
//! a.write_all(b"hello").await?;
//! let mut buf = [0u8; 5];
//! b.read_exact(&mut buf).await?;
//! a.shutdown().await?; // delivers what was written, then closes the connection
//! # Ok(()) }
//! ```
//!
//! Every peer connection is closed, and its background task ended, when the last object that
//! owns it ([`PendingOffer`], [`PendingAnswer`] or [`DataChannelStream`]) is dropped.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use ::rtc::ice::mdns::MulticastDnsMode;
use ::rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::mpsc::{self, OwnedPermit};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::data_channel::{
    DataChannel, DataChannelEvent, RTCDataChannelInit, RTCDataChannelState,
};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState, RTCSessionDescription,
    SettingEngineBuilder,
};
use webrtc::runtime::{AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, Runtime};

/// Messages queued between [`DataChannelStream`]'s writer and its background sender.
const WRITE_QUEUE: usize = 64;
/// How long closing waits for the remote to acknowledge the data channel's closing.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);

/// A STUN or TURN server for ICE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port` or `turn:host:port?transport=udp` URLs of one server.
    pub urls: Vec<String>,
    /// TURN user name (empty for STUN).
    pub username: String,
    /// TURN password (empty for STUN).
    pub credential: String,
}

/// Settings of the WebRTC peer connections.
#[derive(Clone, Debug)]
pub struct RtcConfig {
    /// Local addresses to bind the ICE UDP sockets to, one socket each, on an ephemeral port.
    ///
    /// An unspecified address (`0.0.0.0`, `::`) stands for every local interface of its family
    /// except loopback and link-local, as webrtc-rs enumerates them. Loopback must be named
    /// explicitly (`127.0.0.1`), which is what [`RtcConfig::loopback`] does.
    pub bind_addrs: Vec<IpAddr>,
    /// STUN/TURN servers. Empty by default: only host candidates are gathered.
    pub ice_servers: Vec<IceServer>,
    /// Resolve the remote's mDNS (`*.local`) host candidates, as browsers send them.
    ///
    /// Needs a multicast-capable interface. When building the connection fails with mDNS on
    /// (as in a loopback-only network namespace, "No such device"), it is retried without.
    pub mdns: bool,
    /// `SO_RCVBUF` and `SO_SNDBUF` for the ICE UDP sockets, in bytes (0 keeps the system
    /// default). The kernel caps them at `net.core.rmem_max` / `wmem_max`. Throughput between
    /// two local peers is bound by UDP receive drops: 8–23 MB/s with the defaults.
    pub socket_buffer_size: usize,
    /// The SCTP receive window we advertise (a_rwnd), in bytes.
    pub sctp_receive_window: u32,
    /// Largest data-channel message we send, in bytes; lowered further to what the remote
    /// advertises (`a=max-message-size`; browsers accept 256 KiB). 64 KiB by default, about
    /// twice the throughput of 16 KiB between two webrtc-rs peers.
    pub max_message_size: usize,
    /// Bytes handed to the data channel but not yet acknowledged by the remote above which
    /// writes wait (send-side back-pressure). Larger values let a fast sender overrun the
    /// receiver's UDP socket buffer, and every drop costs a retransmission stall.
    pub send_buffer_limit: usize,
    /// How long to wait for ICE gathering before giving out the SDP.
    pub gather_timeout: Duration,
    /// How long [`PendingOffer::wait_answer`] waits for the answer.
    pub answer_timeout: Duration,
    /// How long the data channel may take to open once both descriptions are set.
    pub connect_timeout: Duration,
    /// How long a graceful shutdown waits for the remote to acknowledge the data written.
    pub close_timeout: Duration,
}

impl Default for RtcConfig {
    /// Every local interface (IPv4), no ICE servers, mDNS resolution on, tuned buffers.
    fn default() -> Self {
        RtcConfig {
            bind_addrs: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            ice_servers: Vec::new(),
            mdns: true,
            socket_buffer_size: 4 << 20,
            sctp_receive_window: 4 << 20,
            max_message_size: 64 << 10,
            send_buffer_limit: 1 << 20,
            gather_timeout: webtorrent_core::signal::ICE_GATHER_TIMEOUT,
            answer_timeout: webtorrent_core::signal::Config::default().offer_timeout,
            connect_timeout: webtorrent_core::signal::CHANNEL_OPEN_TIMEOUT,
            close_timeout: Duration::from_secs(10),
        }
    }
}

impl RtcConfig {
    /// The defaults, bound to `127.0.0.1` only and without mDNS: for loopback-only hosts and
    /// network namespaces, where a wildcard bind finds no interface.
    pub fn loopback() -> Self {
        RtcConfig {
            bind_addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            mdns: false,
            ..RtcConfig::default()
        }
    }
}

/// Errors of the WebRTC transport.
#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    /// The configuration cannot be used.
    #[error("invalid WebRTC configuration: {0}")]
    Config(String),
    /// An SDP string from the remote is not a usable offer or answer.
    #[error("invalid SDP {kind}: {reason}")]
    InvalidSdp {
        /// `offer` or `answer`.
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// webrtc-rs reported an error.
    #[error("WebRTC {context}: {message}")]
    WebRtc {
        /// The step that failed.
        context: &'static str,
        /// webrtc-rs's message.
        message: String,
    },
    /// ICE gathering found no candidate in time.
    #[error("ICE gathering found no candidate within {0:?}")]
    GatheringTimeout(Duration),
    /// No answer came within [`RtcConfig::answer_timeout`], or its source ended without one.
    #[error("no SDP answer received within {0:?}")]
    AnswerTimeout(Duration),
    /// The data channel did not open within [`RtcConfig::connect_timeout`].
    #[error("data channel not open within {0:?} (ICE/DTLS/SCTP did not complete)")]
    ConnectTimeout(Duration),
    /// The peer connection failed or was closed before the data channel opened.
    #[error("peer connection {0} before the data channel opened")]
    ConnectionFailed(String),
    /// The data channel closed before it opened.
    #[error("data channel closed before it opened")]
    ChannelClosed,
}

fn webrtc_err(context: &'static str) -> impl FnOnce(webrtc::error::Error) -> RtcError {
    move |e| RtcError::WebRtc {
        context,
        message: e.to_string(),
    }
}

/// [`webrtc::runtime::TokioRuntime`], raising the socket buffers of the UDP sockets it wraps.
#[derive(Debug)]
struct TunedRuntime {
    inner: webrtc::runtime::TokioRuntime,
    socket_buffer_size: usize,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Runtime for TunedRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) -> Box<dyn webrtc::runtime::JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: BoxFuture<'static, ()>,
    ) -> Box<dyn webrtc::runtime::JoinHandle> {
        self.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        if self.socket_buffer_size > 0 {
            let sock = socket2::SockRef::from(&socket);
            // Best effort: the kernel caps both at rmem_max/wmem_max.
            if let Err(e) = sock.set_recv_buffer_size(self.socket_buffer_size) {
                tracing::debug!("SO_RCVBUF: {e}");
            }
            if let Err(e) = sock.set_send_buffer_size(self.socket_buffer_size) {
                tracing::debug!("SO_SNDBUF: {e}");
            }
            tracing::trace!(
                rcvbuf = ?sock.recv_buffer_size(),
                sndbuf = ?sock.send_buffer_size(),
                "WebRTC UDP socket buffers"
            );
        }
        self.inner.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> BoxFuture<'a, io::Result<Arc<dyn AsyncTcpStream>>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (tuned UDP buffers)"
    }
}

/// Receives the peer connection's events on the driver task: it must never block there.
struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    channels: mpsc::Sender<Arc<dyn DataChannel>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!("WebRTC connection {state}");
        self.state.send_replace(state);
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        // The first channel is the one; any other is dropped, which unregisters it.
        let _ = self.channels.try_send(channel);
    }
}

/// Closes the peer connection when the last owner lets go of it.
struct Guard {
    pc: Arc<dyn PeerConnection>,
    channel: Mutex<Option<Arc<dyn DataChannel>>>,
    closed: AtomicBool,
    /// The runtime the connection's driver runs on, to close it from `drop` on any thread.
    runtime: tokio::runtime::Handle,
}

impl Guard {
    fn set_channel(&self, channel: Arc<dyn DataChannel>) {
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = Some(channel);
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // In its own task, so that cancelling the caller cannot leave the connection open.
        let _ = self
            .runtime
            .spawn(close_peer(self.pc.clone(), channel))
            .await;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if *self.closed.get_mut() {
            return;
        }
        let channel = self
            .channel
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // Once the runtime is shut down, this does nothing: the driver is gone with it.
        self.runtime.spawn(close_peer(self.pc.clone(), channel));
    }
}

/// Closes the data channel (so the remote sees it close now, not when ICE consent expires),
/// gives the remote a moment to acknowledge, then closes the connection and stops its driver.
async fn close_peer(pc: Arc<dyn PeerConnection>, channel: Option<Arc<dyn DataChannel>>) {
    if let Some(channel) = channel {
        if channel.close().await.is_ok() {
            let deadline = tokio::time::Instant::now() + CLOSE_HANDSHAKE;
            while tokio::time::Instant::now() < deadline {
                match channel.ready_state().await {
                    Ok(RTCDataChannelState::Closed) | Err(_) => break,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
    }
    if let Err(e) = pc.close().await {
        tracing::debug!("closing WebRTC peer connection: {e}");
    }
}

/// Resolves when the connection has failed or closed, with that state.
async fn failed(state: &mut watch::Receiver<RTCPeerConnectionState>) -> RTCPeerConnectionState {
    loop {
        let s = *state.borrow_and_update();
        if matches!(
            s,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            return s;
        }
        if state.changed().await.is_err() {
            return RTCPeerConnectionState::Closed;
        }
    }
}

/// One peer connection being set up.
struct Peer {
    pc: Arc<dyn PeerConnection>,
    guard: Arc<Guard>,
    state: watch::Receiver<RTCPeerConnectionState>,
    gathered: watch::Receiver<bool>,
    channels: mpsc::Receiver<Arc<dyn DataChannel>>,
    config: RtcConfig,
}

impl Peer {
    async fn build(config: &RtcConfig) -> Result<Peer, RtcError> {
        if config.bind_addrs.is_empty() {
            return Err(RtcError::Config("no bind address".into()));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| RtcError::Config("not inside a tokio runtime".into()))?;
        match Peer::build_with(config, config.mdns, runtime.clone()).await {
            Err(e) if config.mdns => {
                tracing::debug!("WebRTC with mDNS failed ({e}); retrying without mDNS");
                Peer::build_with(config, false, runtime).await
            }
            r => r,
        }
    }

    async fn build_with(
        config: &RtcConfig,
        mdns: bool,
        tokio_runtime: tokio::runtime::Handle,
    ) -> Result<Peer, RtcError> {
        let (gathered_tx, gathered) = watch::channel(false);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (channels_tx, channels) = mpsc::channel(4);
        let handler = Arc::new(Handler {
            gathered: gathered_tx,
            state: state_tx,
            channels: channels_tx,
        });
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(if mdns {
                MulticastDnsMode::QueryOnly
            } else {
                MulticastDnsMode::Disabled
            })
            .with_include_loopback_candidate(config.bind_addrs.iter().any(|a| a.is_loopback()))
            .with_sctp_max_receive_buffer_size(config.sctp_receive_window)
            // What we accept; what we send is capped by `max_message_size` and the remote.
            .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(
                SctpMaxMessageSize::MAX_MESSAGE_SIZE,
            ))
            // ICE checks paced at RFC 8445's Ta of 50 ms (webrtc-rs defaults to 200 ms, which
            // cost about 200 ms on every connection), still giving up after about 1.4 s.
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_CHECKS))
            .build();
        let ice_servers = config
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let runtime: Arc<dyn Runtime> = Arc::new(TunedRuntime {
            inner: webrtc::runtime::TokioRuntime,
            socket_buffer_size: config.socket_buffer_size,
        });
        let udp_addrs: Vec<SocketAddr> = config
            .bind_addrs
            .iter()
            .map(|ip| SocketAddr::new(*ip, 0))
            .collect();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers)
                    .build(),
            )
            .with_setting_engine(settings)
            .with_handler(handler)
            .with_runtime(runtime)
            .with_udp_addrs(udp_addrs)
            .with_data_channel_send_buffer_limit(config.send_buffer_limit.max(1))
            .build()
            .await
            .map_err(webrtc_err("building the peer connection"))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let guard = Arc::new(Guard {
            pc: pc.clone(),
            channel: Mutex::new(None),
            closed: AtomicBool::new(false),
            runtime: tokio_runtime,
        });
        Ok(Peer {
            pc,
            guard,
            state,
            gathered,
            channels,
            config: config.clone(),
        })
    }

    /// The local description once ICE gathering is complete (or, after the gathering timeout,
    /// with the candidates found so far, if any).
    async fn local_sdp(&mut self) -> Result<String, RtcError> {
        let timeout = self.config.gather_timeout;
        let complete = tokio::time::timeout(timeout, self.gathered.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok());
        let desc = self
            .pc
            .local_description()
            .await
            .ok_or_else(|| RtcError::WebRtc {
                context: "reading the local description",
                message: "no local description".into(),
            })?;
        if !complete {
            if !desc.sdp.contains("a=candidate:") {
                return Err(RtcError::GatheringTimeout(timeout));
            }
            tracing::debug!("ICE gathering incomplete after {timeout:?}; sending what we have");
        }
        Ok(desc.sdp)
    }

    /// Waits for `channel` to open, within the connect timeout.
    async fn open(mut self, channel: Arc<dyn DataChannel>) -> Result<DataChannelStream, RtcError> {
        let timeout = self.config.connect_timeout;
        let state = &mut self.state;
        tokio::time::timeout(timeout, async {
            loop {
                tokio::select! {
                    event = channel.poll() => match event {
                        Some(DataChannelEvent::OnOpen) => return Ok(()),
                        Some(DataChannelEvent::OnClose) | None => return Err(RtcError::ChannelClosed),
                        Some(_) => {}
                    },
                    s = failed(state) => return Err(RtcError::ConnectionFailed(s.to_string())),
                }
            }
        })
        .await
        .map_err(|_| RtcError::ConnectTimeout(timeout))??;
        Ok(DataChannelStream::start(self, channel).await)
    }
}

fn parse_sdp(kind: &'static str, sdp: &str) -> Result<RTCSessionDescription, RtcError> {
    let invalid = |reason: String| RtcError::InvalidSdp { kind, reason };
    let desc = if kind == "offer" {
        RTCSessionDescription::offer(sdp.to_owned())
    } else {
        RTCSessionDescription::answer(sdp.to_owned())
    }
    .map_err(|e| invalid(e.to_string()))?;
    let parsed = desc.unmarshal().map_err(|e| invalid(e.to_string()))?;
    if kind == "answer" && sdp.lines().any(|l| l.trim_end() == "a=setup:actpass") {
        return Err(invalid("a=setup:actpass: this is an offer".into()));
    }
    if !parsed
        .media_descriptions
        .iter()
        .any(|m| m.media_name.media == "application")
    {
        return Err(invalid("no data channel (m=application) section".into()));
    }
    Ok(desc)
}

/// Our offer, waiting for the remote's answer. Dropping it closes the peer connection.
pub struct PendingOffer {
    peer: Peer,
    channel: Arc<dyn DataChannel>,
}

impl fmt::Debug for PendingOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingOffer").finish_non_exhaustive()
    }
}

/// Creates a peer connection with one ordered, reliable data channel (random hex label, as
/// simple-peer makes them) and returns it with its complete, non-trickle SDP offer.
pub async fn create_offer(config: &RtcConfig) -> Result<(PendingOffer, String), RtcError> {
    let mut peer = Peer::build(config).await?;
    let label = hex::encode(rand::random::<[u8; 20]>());
    let channel = peer
        .pc
        .create_data_channel(&label, Some(RTCDataChannelInit::default()))
        .await
        .map_err(webrtc_err("creating the data channel"))?;
    peer.guard.set_channel(channel.clone());
    let offer = peer
        .pc
        .create_offer(None)
        .await
        .map_err(webrtc_err("creating the offer"))?;
    peer.pc
        .set_local_description(offer)
        .await
        .map_err(webrtc_err("setting the local offer"))?;
    let sdp = peer.local_sdp().await?;
    Ok((PendingOffer { peer, channel }, sdp))
}

impl PendingOffer {
    /// Applies the remote's SDP answer and resolves once the data channel is open.
    ///
    /// Fails on an unusable answer, when the connection fails, or after
    /// [`RtcConfig::connect_timeout`].
    pub async fn accept_answer(self, sdp: &str) -> Result<DataChannelStream, RtcError> {
        let desc = parse_sdp("answer", sdp)?;
        self.peer
            .pc
            .set_remote_description(desc)
            .await
            .map_err(|e| RtcError::InvalidSdp {
                kind: "answer",
                reason: e.to_string(),
            })?;
        self.peer.open(self.channel).await
    }

    /// Waits up to [`RtcConfig::answer_timeout`] for `answer` (the SDP from the signalling
    /// channel; `None` if that channel gave up), then [`accept_answer`](Self::accept_answer)s it.
    pub async fn wait_answer<F>(self, answer: F) -> Result<DataChannelStream, RtcError>
    where
        F: Future<Output = Option<String>>,
    {
        let timeout = self.peer.config.answer_timeout;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Some(sdp)) => self.accept_answer(&sdp).await,
            Ok(None) | Err(_) => Err(RtcError::AnswerTimeout(timeout)),
        }
    }
}

/// Our answer to a remote offer, waiting for the remote's data channel to open. Dropping it
/// closes the peer connection.
pub struct PendingAnswer {
    peer: Peer,
}

impl fmt::Debug for PendingAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAnswer").finish_non_exhaustive()
    }
}

/// Answers a remote SDP offer: returns the complete, non-trickle SDP answer, and a
/// [`PendingAnswer`] to await the remote's data channel with.
pub async fn answer_offer(
    config: &RtcConfig,
    offer_sdp: &str,
) -> Result<(PendingAnswer, String), RtcError> {
    let desc = parse_sdp("offer", offer_sdp)?;
    let mut peer = Peer::build(config).await?;
    peer.pc
        .set_remote_description(desc)
        .await
        .map_err(|e| RtcError::InvalidSdp {
            kind: "offer",
            reason: e.to_string(),
        })?;
    let answer = peer
        .pc
        .create_answer(None)
        .await
        .map_err(webrtc_err("creating the answer"))?;
    peer.pc
        .set_local_description(answer)
        .await
        .map_err(webrtc_err("setting the local answer"))?;
    let sdp = peer.local_sdp().await?;
    Ok((PendingAnswer { peer }, sdp))
}

impl PendingAnswer {
    /// Resolves with the remote's data channel once it is open.
    ///
    /// Fails when the connection fails, or after [`RtcConfig::connect_timeout`].
    pub async fn wait_open(mut self) -> Result<DataChannelStream, RtcError> {
        let timeout = self.peer.config.connect_timeout;
        let peer = &mut self.peer;
        let channel = tokio::time::timeout(timeout, async {
            tokio::select! {
                channel = peer.channels.recv() => channel.ok_or(RtcError::ChannelClosed),
                s = failed(&mut peer.state) => Err(RtcError::ConnectionFailed(s.to_string())),
            }
        })
        .await
        .map_err(|_| RtcError::ConnectTimeout(timeout))??;
        self.peer.guard.set_channel(channel.clone());
        self.peer.open(channel).await
    }
}

/// The next message on the channel: `None` once it is closed.
async fn next_message(
    channel: Arc<dyn DataChannel>,
    mut state: watch::Receiver<RTCPeerConnectionState>,
) -> io::Result<Option<BytesMut>> {
    loop {
        tokio::select! {
            biased;
            event = channel.poll() => match event {
                Some(DataChannelEvent::OnMessage(m)) if !m.data.is_empty() => return Ok(Some(m.data)),
                Some(DataChannelEvent::OnClose) | None => return Ok(None),
                Some(_) => {}
            },
            s = failed(&mut state) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    format!("WebRTC peer connection {s}"),
                ))
            }
        }
    }
}

/// Pacing of ICE connectivity checks while connecting...
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// ... and the checks sent per candidate pair before it is given up (28 × 50 ms = 1.4 s).
const ICE_CHECKS: u16 = 28;

/// Sends queued writes as data-channel messages, coalescing small ones; on a clean end of the
/// queue, waits (bounded) for the remote to acknowledge everything, then closes the connection.
async fn send_loop(
    channel: Arc<dyn DataChannel>,
    guard: Arc<Guard>,
    mut queue: mpsc::Receiver<BytesMut>,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    max_message_size: Arc<AtomicUsize>,
    close_timeout: Duration,
    error: Arc<Mutex<Option<String>>>,
) {
    let mut carry: Option<BytesMut> = None;
    let result: Result<(), String> = async {
        loop {
            let mut msg = match carry.take() {
                Some(m) => m,
                None => match queue.recv().await {
                    Some(m) => m,
                    None => break,
                },
            };
            let max = max_message_size.load(Ordering::Relaxed);
            while msg.len() < max {
                match queue.try_recv() {
                    Ok(next) if msg.len() + next.len() <= max => msg.extend_from_slice(&next),
                    Ok(next) => {
                        carry = Some(next);
                        break;
                    }
                    Err(_) => break,
                }
            }
            tokio::select! {
                r = channel.send(msg) => r.map_err(|e| e.to_string())?,
                s = failed(&mut state) => return Err(format!("WebRTC peer connection {s}")),
            }
        }
        // Shut down: let the remote acknowledge what was sent before closing the channel.
        let drained = async {
            while channel.outstanding_bytes().await.unwrap_or(0) > 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::select! {
            r = tokio::time::timeout(close_timeout, drained) => {
                r.map_err(|_| format!("remote did not acknowledge within {close_timeout:?}"))
            }
            s = failed(&mut state) => Err(format!("WebRTC peer connection {s}")),
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!("WebRTC data channel send: {e}");
        *error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }
    guard.close().await;
}

/// An open data channel as a byte stream for the BitTorrent wire protocol.
///
/// - Reads return the payloads of the remote's messages in order; end of stream when the
///   channel or connection is closed, `ConnectionReset` when the connection failed.
/// - Writes are queued (a bounded queue) for a background sender, which sends them as messages
///   of at most [`max_message_size`](Self::max_message_size) bytes (coalescing small writes)
///   and waits while more than [`RtcConfig::send_buffer_limit`] bytes are unacknowledged.
///   `flush` does not wait for the sender; a send failure is reported by the next write or by
///   `shutdown`.
/// - A remote that vanishes without closing is noticed when ICE consent fails (about 30 s);
///   reads then fail with `ConnectionReset`.
/// - `shutdown` sends what was queued, waits for the remote to acknowledge it (up to
///   [`RtcConfig::close_timeout`]), then closes the channel and the peer connection.
/// - Dropping the stream closes the channel and the connection at once; data still queued is
///   lost.
pub struct DataChannelStream {
    channel: Arc<dyn DataChannel>,
    /// Keeps the connection while the stream lives (the sender holds the other reference).
    _guard: Arc<Guard>,
    state: watch::Receiver<RTCPeerConnectionState>,
    reading: Option<BoxFuture<'static, io::Result<Option<BytesMut>>>>,
    read_buf: Bytes,
    read_done: bool,
    queue: Option<mpsc::Sender<BytesMut>>,
    reserving: Option<BoxFuture<'static, Result<OwnedPermit<BytesMut>, SendError<()>>>>,
    sender: Option<JoinHandle<()>>,
    send_error: Arc<Mutex<Option<String>>>,
    max_message_size: Arc<AtomicUsize>,
    remote_max_message_size: usize,
    remote_addr: Option<SocketAddr>,
}

impl fmt::Debug for DataChannelStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataChannelStream")
            .field("remote_addr", &self.remote_addr)
            .field("max_message_size", &self.max_message_size())
            .finish_non_exhaustive()
    }
}

impl DataChannelStream {
    async fn start(peer: Peer, channel: Arc<dyn DataChannel>) -> DataChannelStream {
        // RFC 8841: 64 KiB when the remote does not say.
        let mut remote_max_message_size = 64 << 10;
        let mut remote_addr = None;
        if let Some(sctp) = peer.pc.sctp().await {
            if let Ok(n) = sctp.max_message_size().await {
                if n > 0 {
                    remote_max_message_size = n as usize;
                }
            }
            let ice = sctp.transport().ice_transport();
            if let Ok(Some(pair)) = ice.get_selected_candidate_pair().await {
                let remote = pair.remote();
                remote_addr = remote
                    .address
                    .parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, remote.port));
            }
        }
        let max_message_size = Arc::new(AtomicUsize::new(
            peer.config
                .max_message_size
                .clamp(1, remote_max_message_size),
        ));
        let (queue_tx, queue_rx) = mpsc::channel(WRITE_QUEUE);
        let send_error = Arc::new(Mutex::new(None));
        let sender = tokio::spawn(send_loop(
            channel.clone(),
            peer.guard.clone(),
            queue_rx,
            peer.state.clone(),
            max_message_size.clone(),
            peer.config.close_timeout,
            send_error.clone(),
        ));
        DataChannelStream {
            channel,
            _guard: peer.guard,
            state: peer.state,
            reading: None,
            read_buf: Bytes::new(),
            read_done: false,
            queue: Some(queue_tx),
            reserving: None,
            sender: Some(sender),
            send_error,
            max_message_size,
            remote_max_message_size,
            remote_addr,
        }
    }

    /// The remote address of the selected ICE candidate pair, when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The size of the messages writes are split into: the smaller of
    /// [`RtcConfig::max_message_size`] (or [`set_max_message_size`](Self::set_max_message_size))
    /// and what the remote accepts.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size.load(Ordering::Relaxed)
    }

    /// The largest message the remote accepts (its `a=max-message-size`, capped at 256 KiB).
    pub fn remote_max_message_size(&self) -> usize {
        self.remote_max_message_size
    }

    /// Changes the size of the messages later writes are split into, e.g. to 64 KiB once the
    /// remote is known to be a webrtc-rs peer; capped at what the remote accepts. Returns the
    /// size in effect.
    pub fn set_max_message_size(&self, size: usize) -> usize {
        let size = size.clamp(1, self.remote_max_message_size);
        self.max_message_size.store(size, Ordering::Relaxed);
        size
    }

    fn send_failed(&self) -> io::Error {
        let msg = self
            .send_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "data channel closed".into());
        io::Error::new(io::ErrorKind::BrokenPipe, msg)
    }
}

impl AsyncRead for DataChannelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read_buf.is_empty() {
                let n = this.read_buf.len().min(buf.remaining());
                buf.put_slice(&this.read_buf[..n]);
                this.read_buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_done || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let reading = this.reading.get_or_insert_with(|| {
                Box::pin(next_message(this.channel.clone(), this.state.clone()))
            });
            let result = ready!(reading.as_mut().poll(cx));
            this.reading = None;
            match result {
                Ok(Some(data)) => this.read_buf = data.freeze(),
                Ok(None) => this.read_done = true,
                Err(e) => {
                    this.read_done = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl AsyncWrite for DataChannelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let Some(queue) = &this.queue else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "data channel stream is shut down",
            )));
        };
        let n = buf.len().min(this.max_message_size.load(Ordering::Relaxed));
        if this.reserving.is_none() {
            match queue.try_reserve() {
                Ok(permit) => {
                    permit.send(BytesMut::from(&buf[..n]));
                    return Poll::Ready(Ok(n));
                }
                Err(TrySendError::Closed(())) => return Poll::Ready(Err(this.send_failed())),
                Err(TrySendError::Full(())) => {
                    this.reserving = Some(Box::pin(queue.clone().reserve_owned()));
                }
            }
        }
        let Some(reserving) = this.reserving.as_mut() else {
            return Poll::Ready(Err(this.send_failed()));
        };
        let permit = ready!(reserving.as_mut().poll(cx));
        this.reserving = None;
        match permit {
            Ok(permit) => {
                permit.send(BytesMut::from(&buf[..n]));
                Poll::Ready(Ok(n))
            }
            Err(_) => Poll::Ready(Err(this.send_failed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Ending the queue makes the sender drain it, wait for acknowledgement and close.
        this.queue = None;
        this.reserving = None;
        if let Some(sender) = this.sender.as_mut() {
            let _ = ready!(Pin::new(sender).poll(cx));
            this.sender = None;
        }
        if this
            .send_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Poll::Ready(Err(this.send_failed()));
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for DataChannelStream {
    fn drop(&mut self) {
        // The sender holds the other reference to the guard: once it is gone, the guard's drop
        // closes the channel and the connection.
        if let Some(sender) = self.sender.take() {
            sender.abort();
        }
    }
}
