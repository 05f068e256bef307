//! `qXfer:memory-map:read` for an observer: the controller's map (with the
//! identified chip's window), fetched from the owner when GDB asks for its
//! start and served in pieces from that copy.

use gdbstub::target::ext::memory_map::MemoryMap;
use gdbstub::target::TargetResult;

use super::{to_target_error, Answer, ObserveError, ObserverTarget, Query};
use crate::gdb::tdesc::copy_window;

impl MemoryMap for ObserverTarget {
    fn memory_map_xml(
        &self,
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        let cached = self.memory_map.borrow().clone();
        let xml = match cached {
            Some(xml) if offset != 0 => xml,
            _ => match self.ask(Query::MemoryMap).map_err(to_target_error)? {
                Answer::MemoryMap(xml) => {
                    *self.memory_map.borrow_mut() = Some(xml.clone());
                    xml
                }
                _ => return Err(to_target_error(ObserveError::OwnerGone)),
            },
        };
        Ok(copy_window(xml.as_bytes(), offset, length, buf))
    }
}
