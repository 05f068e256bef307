//! `SimProbe`: the virtual board as a probe-rs debug probe.
//!
//! This module owns the driver-level behaviour a real SWD probe has (FAULT
//! handling with sticky-error clearing, speed setting, reset pin) and
//! nothing of the target: every register access goes to the board.

use std::sync::Arc;

use probe_rs::architecture::arm::sequences::ArmDebugSequence;
use probe_rs::architecture::arm::{
    ArmCommunicationInterface, ArmDebugInterface, ArmError, DapError, DapProbe, RawDapAccess,
    RegisterAddress,
};
use probe_rs::probe::{DebugProbe, DebugProbeError, WireProtocol};
use probe_rs::CoreStatus;

use super::board::{Ack, McuBoard};
use super::link::{DapOp, Reg};
use super::SimBoard;

/// A debug probe whose target is the in-process virtual board.
pub struct SimProbe {
    board: SimBoard,
    speed_khz: u32,
}

impl std::fmt::Debug for SimProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimProbe")
            .field("speed_khz", &self.speed_khz)
            .finish()
    }
}

impl SimProbe {
    pub fn new(board: SimBoard) -> Self {
        let speed_khz = (board.lock().mcu().clock.swd_hz() / 1000) as u32;
        Self { board, speed_khz }
    }

    /// What a CMSIS-DAP driver does on a FAULT ack: read CTRL/STAT, clear
    /// the sticky flags through ABORT, and report the fault.
    fn fault(&mut self) -> ArmError {
        let mut b = self.board.lock();
        let _ = b.dp_read(0x4);
        let _ = b.dp_write(0x0, 0x1E);
        DapError::FaultResponse.into()
    }
}

fn ack_error(ack: Ack) -> ArmError {
    match ack {
        Ack::Fault => DapError::FaultResponse.into(),
        Ack::NoAck => DapError::NoAcknowledge.into(),
    }
}

impl DebugProbe for SimProbe {
    fn get_name(&self) -> &str {
        "extflash-gdb virtual STM32F407VE + W25Q64JV"
    }

    fn speed_khz(&self) -> u32 {
        self.speed_khz
    }

    /// The link profile's probe picks the clock (ST-Link/V2 rounds down to
    /// its table and refuses below it).
    fn set_speed(&mut self, speed_khz: u32) -> Result<u32, DebugProbeError> {
        let mut b = self.board.lock();
        let actual = b
            .link_profile()
            .supported_khz(speed_khz)
            .map_err(|_| DebugProbeError::UnsupportedSpeed(speed_khz))?;
        self.speed_khz = actual;
        b.set_swd_hz(actual as u64 * 1000);
        Ok(actual)
    }

    fn attach(&mut self) -> Result<(), DebugProbeError> {
        Ok(())
    }

    fn detach(&mut self) -> Result<(), probe_rs::Error> {
        let _ = self.board.lock().flush();
        Ok(())
    }

    fn target_reset(&mut self) -> Result<(), DebugProbeError> {
        self.board.lock().pin_reset();
        Ok(())
    }

    fn target_reset_assert(&mut self) -> Result<(), DebugProbeError> {
        self.board.lock().set_nrst(true);
        Ok(())
    }

    fn target_reset_deassert(&mut self) -> Result<(), DebugProbeError> {
        self.board.lock().set_nrst(false);
        Ok(())
    }

    fn select_protocol(&mut self, protocol: WireProtocol) -> Result<(), DebugProbeError> {
        match protocol {
            WireProtocol::Swd => Ok(()),
            other => Err(DebugProbeError::UnsupportedProtocol(other)),
        }
    }

    fn active_protocol(&self) -> Option<WireProtocol> {
        Some(WireProtocol::Swd)
    }

    fn has_arm_interface(&self) -> bool {
        true
    }

    fn try_get_arm_debug_interface<'probe>(
        self: Box<Self>,
        sequence: Arc<dyn ArmDebugSequence>,
    ) -> Result<Box<dyn ArmDebugInterface + 'probe>, (Box<dyn DebugProbe>, ArmError)> {
        Ok(ArmCommunicationInterface::create(self, sequence, false))
    }

    fn into_probe(self: Box<Self>) -> Box<dyn DebugProbe> {
        self
    }

    fn try_as_dap_probe(&mut self) -> Option<&mut dyn DapProbe> {
        Some(self)
    }

    fn get_target_voltage(&mut self) -> Result<Option<f32>, DebugProbeError> {
        Ok(Some(3.3))
    }
}

/// The register an access refers to, as the link profile sees it.
fn link_reg(b: &McuBoard, address: RegisterAddress) -> Reg {
    match address {
        RegisterAddress::DpRegister(r) => Reg::Dp(r.address & 0xC),
        RegisterAddress::ApRegister(r) => Reg::Ap(b.ap_reg(r)),
    }
}

/// probe-rs's generic ARM interface calls arrive here, one DP/AP register
/// (or a block of one register) at a time; each call is first charged to
/// the link profile, then carried out on the board.
impl RawDapAccess for SimProbe {
    fn raw_read_register(&mut self, address: RegisterAddress) -> Result<u32, ArmError> {
        let r = {
            let mut b = self.board.lock();
            let reg = link_reg(&b, address);
            b.charge_link(DapOp::Read(reg));
            match address {
                RegisterAddress::DpRegister(r) => b.dp_read(r.address),
                RegisterAddress::ApRegister(r) => b.ap_read(r),
            }
        };
        match r {
            Ok(v) => Ok(v),
            Err(Ack::Fault) => Err(self.fault()),
            Err(a) => Err(ack_error(a)),
        }
    }

    fn raw_write_register(&mut self, address: RegisterAddress, value: u32) -> Result<(), ArmError> {
        let r = {
            let mut b = self.board.lock();
            let reg = link_reg(&b, address);
            b.charge_link(DapOp::Write(reg, value));
            match address {
                RegisterAddress::DpRegister(r) => b.dp_write(r.address, value),
                RegisterAddress::ApRegister(r) => b.ap_write(r, value),
            }
        };
        match r {
            Ok(()) => Ok(()),
            Err(Ack::Fault) => Err(self.fault()),
            Err(a) => Err(ack_error(a)),
        }
    }

    fn raw_read_block(
        &mut self,
        address: RegisterAddress,
        values: &mut [u32],
    ) -> Result<(), ArmError> {
        // One lock for the whole block, as a probe batches it in one USB packet.
        let r = {
            let mut b = self.board.lock();
            let reg = link_reg(&b, address);
            b.charge_link(DapOp::ReadBlock(reg, values.len()));
            values.iter_mut().try_for_each(|v| {
                *v = match address {
                    RegisterAddress::DpRegister(r) => b.dp_read(r.address)?,
                    RegisterAddress::ApRegister(r) => b.ap_read(r)?,
                };
                Ok(())
            })
        };
        r.map_err(|a| match a {
            Ack::Fault => self.fault(),
            a => ack_error(a),
        })
    }

    fn raw_write_block(
        &mut self,
        address: RegisterAddress,
        values: &[u32],
    ) -> Result<(), ArmError> {
        let r = {
            let mut b = self.board.lock();
            let reg = link_reg(&b, address);
            b.charge_link(DapOp::WriteBlock(reg, values.len()));
            values.iter().try_for_each(|&v| match address {
                RegisterAddress::DpRegister(r) => b.dp_write(r.address, v),
                RegisterAddress::ApRegister(r) => b.ap_write(r, v),
            })
        };
        r.map_err(|a| match a {
            Ack::Fault => self.fault(),
            a => ack_error(a),
        })
    }

    fn jtag_sequence(&mut self, _cycles: u8, _tms: bool, _tdi: u64) -> Result<(), DebugProbeError> {
        Err(DebugProbeError::UnsupportedProtocol(WireProtocol::Jtag))
    }

    fn swj_sequence(&mut self, _bit_len: u8, _bits: u64) -> Result<(), DebugProbeError> {
        // Line resets and the JTAG-to-SWD switch: the DP is always in SWD.
        Ok(())
    }

    fn swj_pins(
        &mut self,
        pin_out: u32,
        pin_select: u32,
        _pin_wait: u32,
    ) -> Result<u32, DebugProbeError> {
        // Bit 7 is nRESET (active low).
        if pin_select & 0x80 != 0 {
            self.board.lock().set_nrst(pin_out & 0x80 == 0);
        }
        Ok(pin_out)
    }

    fn into_probe(self: Box<Self>) -> Box<dyn DebugProbe> {
        self
    }

    fn raw_flush(&mut self) -> Result<(), ArmError> {
        self.board.lock().charge_link(DapOp::Flush);
        Ok(())
    }

    fn core_status_notification(&mut self, _state: CoreStatus) -> Result<(), DebugProbeError> {
        self.board.lock().charge_link(DapOp::StatusNotification);
        Ok(())
    }
}

impl DapProbe for SimProbe {}
