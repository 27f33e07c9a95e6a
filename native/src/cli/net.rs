//! The network options every command that runs a client takes: DHT, state folder, protocol
//! encryption, uTP, port mapping and the STUN/TURN servers of WebRTC.

use std::path::PathBuf;

/// DHT (BEP 5), state-folder and encryption options, given before or after the command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NetArgs {
    /// Bootstrap the DHT (BEP 5) from this node, HOST:PORT (repeatable), instead of the
    /// well-known routers.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT", global = true)]
    pub dht_bootstrap: Vec<String>,
    /// Do not join the DHT: peers then come from trackers, PEX and --peer only.
    #[arg(long, global = true)]
    pub no_dht: bool,
    /// Folder for what is kept between runs (the DHT's node id and routing table, each
    /// torrent's fast-resume record); default: the user's data folder, webtorrent.
    #[arg(long, value_name = "DIR", global = true)]
    pub state: Option<PathBuf>,
    /// Message stream encryption with desktop peers over TCP: prefer (encrypted handshake
    /// first, plain when a peer cannot; the data then in plaintext unless the peer requires
    /// RC4), require (RC4 only) or disable (plain only).
    #[arg(long, value_name = "POLICY", global = true, default_value_t)]
    pub encryption: webtorrent::Encryption,
    /// Do not use uTP (BEP 29): peer connections over TCP only.
    #[arg(long, global = true)]
    pub no_utp: bool,
    /// Do not ask the router to forward the listen port (PCP, NAT-PMP, UPnP).
    #[arg(long, global = true)]
    pub no_port_mapping: bool,
    /// How to ask the router to forward the listen port: a comma-separated list of pcp,
    /// natpmp and upnp (default: all three).
    #[arg(long, value_name = "METHODS", global = true, value_delimiter = ',')]
    pub port_mapping: Vec<String>,
    /// A STUN server for WebRTC (repeatable): stun:HOST:PORT, or just HOST:PORT. Our WebRTC
    /// peers learn their public address from it; `serve` hands it to its page as well.
    #[arg(long, value_name = "URL", global = true)]
    pub stun: Vec<String>,
    /// A TURN server for WebRTC (repeatable): turn:HOST:PORT[?transport=udp|tcp], turns:…,
    /// or just HOST:PORT; it relays when no direct path exists. Needs --turn-username and
    /// --turn-credential; `serve` hands it, credentials included, to its page as well.
    #[arg(long, value_name = "URL", global = true)]
    pub turn: Vec<String>,
    /// User name for the --turn servers.
    #[arg(long, value_name = "NAME", global = true)]
    pub turn_username: Option<String>,
    /// Password (credential) for the --turn servers.
    #[arg(long, value_name = "SECRET", global = true, alias = "turn-password")]
    pub turn_credential: Option<String>,
}

#[cfg(feature = "webrtc")]
/// `url` with `scheme:` in front unless it has one of `schemes` already; an error names the
/// option and what to give instead.
fn ice_url(option: &str, url: &str, schemes: &[&str]) -> Result<String, String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let url = if schemes.iter().any(|s| lower.starts_with(&format!("{s}:"))) {
        url.to_string()
    } else if lower.contains("://")
        || ["stun:", "stuns:", "turn:", "turns:"]
            .iter()
            .any(|s| lower.starts_with(s))
    {
        return Err(format!(
            "{option} {url}: not a {} URL; give e.g. {}:example.org:3478",
            schemes[0].to_uppercase(),
            schemes[0]
        ));
    } else {
        format!("{}:{url}", schemes[0])
    };
    let rest = &url[url.find(':').map_or(0, |i| i + 1)..];
    let host_port = rest.split('?').next().unwrap_or("");
    if host_port.is_empty() || host_port.starts_with(':') {
        return Err(format!(
            "{option} {url}: no host; give e.g. {}:example.org:3478",
            schemes[0]
        ));
    }
    Ok(url)
}

/// Where the DHT's state is kept in the state folder.
const DHT_STATE: &str = "dht.dat";
/// Where fast-resume records are kept in the state folder.
const RESUME_DIR: &str = "resume";

impl NetArgs {
    /// Where fast-resume records (and the torrents they are for) are kept.
    pub fn resume_dir(&self) -> Result<Option<PathBuf>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.state_dir()?.map(|d| d.join(RESUME_DIR)))
    }

    /// The state folder: `--state`, else the user's data folder (`None` without a home).
    pub fn state_dir(&self) -> Result<Option<PathBuf>, Box<dyn std::error::Error + Send + Sync>> {
        match &self.state {
            Some(d) if d.is_file() => Err(format!(
                "--state {} is a file; give a folder to keep state in (it is created when missing)",
                d.display()
            )
            .into()),
            Some(d) => Ok(Some(d.clone())),
            None => Ok(webtorrent::default_state_dir()),
        }
    }

    /// `o` with these options: DHT, encryption, uTP, port mapping and the STUN/TURN servers
    /// of its WebRTC connections.
    pub async fn client_options(
        &self,
        o: webtorrent::WebTorrentOptions,
    ) -> Result<webtorrent::WebTorrentOptions, Box<dyn std::error::Error + Send + Sync>> {
        #[cfg_attr(not(feature = "webrtc"), allow(unused_mut))]
        let mut o = webtorrent::WebTorrentOptions {
            dht: self.dht_options().await?,
            encryption: self.encryption,
            utp: !self.no_utp,
            port_mapping: self.port_mapping_options()?,
            resume_dir: self.resume_dir()?,
            ..o
        };
        #[cfg(feature = "webrtc")]
        {
            let ice = self.ice_servers()?;
            if !ice.is_empty() {
                let mut c = o.rtc_config();
                c.ice_servers = ice;
                o.rtc = Some(c);
            }
        }
        #[cfg(not(feature = "webrtc"))]
        self.ice_servers()?;
        Ok(o)
    }

    /// The STUN and TURN servers of `--stun` and `--turn`, checked.
    #[cfg(feature = "webrtc")]
    pub fn ice_servers(
        &self,
    ) -> Result<Vec<webtorrent::rtc::IceServer>, Box<dyn std::error::Error + Send + Sync>> {
        let mut out = Vec::new();
        for u in &self.stun {
            out.push(webtorrent::rtc::IceServer {
                urls: vec![ice_url("--stun", u, &["stun", "stuns"])?],
                ..Default::default()
            });
        }
        if self.turn.is_empty() {
            if self.turn_username.is_some() || self.turn_credential.is_some() {
                return Err("--turn-username and --turn-credential are for --turn servers; give --turn URL too".into());
            }
            return Ok(out);
        }
        let (Some(user), Some(pass)) = (&self.turn_username, &self.turn_credential) else {
            return Err("--turn needs --turn-username NAME and --turn-credential SECRET (TURN servers let only known users relay)".into());
        };
        let urls = self
            .turn
            .iter()
            .map(|u| ice_url("--turn", u, &["turn", "turns"]))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(webtorrent::rtc::IceServer {
            urls,
            username: user.clone(),
            credential: pass.clone(),
        });
        Ok(out)
    }

    /// A build without WebRTC refuses `--stun` and `--turn`.
    #[cfg(not(feature = "webrtc"))]
    pub fn ice_servers(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.stun.is_empty() && self.turn.is_empty() {
            Ok(())
        } else {
            Err("--stun and --turn are for WebRTC, which this build lacks (the `webrtc` cargo feature); leave them out".into())
        }
    }

    /// The client's port-mapping settings: `None` with `--no-port-mapping`.
    pub fn port_mapping_options(
        &self,
    ) -> Result<Option<webtorrent::PortMappingOptions>, Box<dyn std::error::Error + Send + Sync>>
    {
        if self.no_port_mapping {
            if !self.port_mapping.is_empty() {
                return Err(
                    "--no-port-mapping and --port-mapping contradict each other; give one of them"
                        .into(),
                );
            }
            return Ok(None);
        }
        let mut o = webtorrent::PortMappingOptions::default();
        if !self.port_mapping.is_empty() {
            o.pcp = false;
            o.natpmp = false;
            o.upnp = false;
            for m in &self.port_mapping {
                match m.trim().to_ascii_lowercase().replace('-', "").as_str() {
                    "pcp" => o.pcp = true,
                    "natpmp" | "pmp" => o.natpmp = true,
                    "upnp" => o.upnp = true,
                    "" => {}
                    other => {
                        return Err(format!(
                            "--port-mapping {other}: not a method; give pcp, natpmp and/or upnp (e.g. --port-mapping upnp,natpmp), or --no-port-mapping"
                        )
                        .into())
                    }
                }
            }
        }
        Ok(Some(o))
    }

    /// The client's DHT settings: `None` with `--no-dht`; else the routers or the nodes
    /// given (names resolved here, so a typo is an error now, not a warning later).
    pub async fn dht_options(
        &self,
    ) -> Result<Option<webtorrent::DhtOptions>, Box<dyn std::error::Error + Send + Sync>> {
        if self.no_dht {
            if !self.dht_bootstrap.is_empty() {
                return Err(
                    "--no-dht and --dht-bootstrap contradict each other; give one of them".into(),
                );
            }
            return Ok(None);
        }
        let state_dir = self.state_dir()?;
        let mut opts = webtorrent::DhtOptions {
            state_file: state_dir.map(|d| d.join(DHT_STATE)),
            ..webtorrent::DhtOptions::default()
        };
        if !self.dht_bootstrap.is_empty() {
            for b in &self.dht_bootstrap {
                if let Err(e) = tokio::net::lookup_host(b.as_str()).await {
                    return Err(format!(
                        "--dht-bootstrap {b}: {e}; give a HOST:PORT that resolves, e.g. 127.0.0.2:6881, or --no-dht"
                    )
                    .into());
                }
            }
            opts.bootstrap = self.dht_bootstrap.clone();
        }
        Ok(Some(opts))
    }
}
