//! `qXfer:memory-map:read`: the XML generated from the board file
//! (`board::memory_map`), regenerated when the external chip is identified
//! (its size and erase size change the window's entry).

use gdbstub::target::ext::memory_map::MemoryMap;
use gdbstub::target::TargetResult;

use super::tdesc::copy_window;
use super::GdbTarget;

impl MemoryMap for GdbTarget {
    fn memory_map_xml(
        &self,
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        Ok(copy_window(
            self.memory_map_xml.as_bytes(),
            offset,
            length,
            buf,
        ))
    }
}
