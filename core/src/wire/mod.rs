//! The BitTorrent peer wire protocol (BEP 3, BEP 6): handshake, messages and an incremental decoder.
