//! Extension protocol messages: the BEP 10 handshake, BEP 9 `ut_metadata` and BEP 11 `ut_pex`.
