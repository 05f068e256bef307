//! An observer's registers and memory (`g`, `m`): read through the session
//! owner. `G` and `M`/`X` never get here (`server::readonly` refuses them
//! first); if they did, they would get the refusal's `E` reply too.

use gdbstub::target::ext::base::singlethread::SingleThreadBase;
use gdbstub::target::{TargetError, TargetResult};

use super::REFUSED_ERRNO;
use super::{to_target_error, Answer, ObserveError, ObservedRegs, ObserverTarget, Query};
use crate::gdb::arch::CortexMRegs;

impl ObserverTarget {
    fn refuse<T>(&self, what: &str) -> TargetResult<T, Self> {
        self.warn("refused packets", || {
            tracing::warn!(id = self.id, "observer connection: refusing to {what}")
        });
        Err(TargetError::Errno(REFUSED_ERRNO))
    }
}

impl SingleThreadBase for ObserverTarget {
    /// Never an `E` reply (GDB would drop the connection): when the
    /// worker does not answer, the registers are unavailable.
    fn read_registers(&mut self, regs: &mut ObservedRegs) -> TargetResult<(), Self> {
        *regs = match self.ask(Query::Registers) {
            Ok(Answer::Registers(Some(v))) => ObservedRegs(Some(CortexMRegs::from_values(&v))),
            Err(ObserveError::OwnerGone) => return Err(to_target_error(ObserveError::OwnerGone)),
            Ok(_) | Err(_) => ObservedRegs(None),
        };
        Ok(())
    }

    fn write_registers(&mut self, _regs: &ObservedRegs) -> TargetResult<(), Self> {
        self.refuse("write registers")
    }

    fn read_addrs(&mut self, start_addr: u32, data: &mut [u8]) -> TargetResult<usize, Self> {
        let query = Query::Memory {
            address: start_addr,
            len: data.len(),
        };
        match self.ask(query).map_err(to_target_error)? {
            Answer::Memory(bytes) if bytes.len() == data.len() => {
                data.copy_from_slice(&bytes);
                Ok(data.len())
            }
            _ => Err(to_target_error(ObserveError::OwnerGone)),
        }
    }

    fn write_addrs(&mut self, _start_addr: u32, _data: &[u8]) -> TargetResult<(), Self> {
        self.refuse("write memory")
    }
}
