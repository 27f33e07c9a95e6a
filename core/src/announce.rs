//! Announce planning: when to announce which event to which tracker (BEP 3, BEP 12).
