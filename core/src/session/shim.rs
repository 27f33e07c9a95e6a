//! TEMPORARY stand-ins until the torrent split lands.
#![allow(missing_docs, unused_variables)]
use crate::piece::Bitfield;
use crate::time::Time;
use crate::torrent::Torrent;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("no metadata")]
    NoMetadata,
}

impl Torrent {
    pub fn hold_requests(&mut self, now: Time, hold: bool) {}
    pub fn requests_held(&self) -> bool {
        false
    }
    pub fn pieces_on_disk(&mut self, now: Time, have: &Bitfield) -> Result<(), SelectionError> {
        Ok(())
    }
    pub fn set_files_wanted(&mut self, now: Time, wanted: &[bool]) -> Result<(), SelectionError> {
        Ok(())
    }
    pub fn files_wanted(&self) -> Option<Vec<bool>> {
        None
    }
    pub fn set_priority_range(
        &mut self,
        now: Time,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<(), SelectionError> {
        Ok(())
    }
    pub fn is_finished(&self) -> bool {
        self.is_complete()
    }
}
