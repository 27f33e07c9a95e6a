//! Tracker message formats: HTTP announce and scrape, UDP (BEP 15) and WebTorrent WebSocket JSON.
