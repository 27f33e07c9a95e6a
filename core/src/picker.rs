//! Piece picking: rarest first, random start, end-game, allowed-fast and streaming ranges.
