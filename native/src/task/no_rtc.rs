//! A torrent's WebRTC side in a build without the `webrtc` feature: nothing. Such a client
//! leaves WebSocket trackers out of the schemes its sessions announce to, so sessions ask
//! for no [`RtcAction`]; should one come anyway, a connection it asks for fails at once.

use tokio::sync::mpsc;
use webtorrent_core::session::RtcAction;
use webtorrent_core::{InfoHash, PeerId};

use super::TaskMsg;
use crate::client::Shared;

/// No WebSocket trackers and no WebRTC connections.
#[derive(Default)]
pub(super) struct RtcPeers {}

impl RtcPeers {
    /// Does nothing; returns the peer whose connection `action` asked for, as failed.
    pub(super) fn act(
        &mut self,
        _shared: &Shared,
        _tx: &mpsc::Sender<TaskMsg>,
        _info_hash: InfoHash,
        action: RtcAction,
    ) -> Option<PeerId> {
        match action {
            RtcAction::ApplyAnswer { peer_id, .. } | RtcAction::AnswerOffer { peer_id, .. } => {
                Some(peer_id)
            }
            _ => None,
        }
    }

    /// Nothing to close.
    pub(super) fn close(&mut self, _info_hash: InfoHash) {}
}
