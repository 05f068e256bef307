//! Error helpers shared by every layer: showing an error with its sources,
//! and telling a lost probe (the session is over) from everything else (an
//! `E xx` reply), by type, never by message text.

/// Display an error with its sources, `a: b: c`.
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// A probe-rs error that means the probe is gone, by variant: USB I/O
/// failure, the probe could not be (re)opened, or it is no longer attached.
/// Target-side failures (faults, timeouts, wrong state) are not.
pub fn is_probe_lost(e: &probe_rs::Error) -> bool {
    use probe_rs::architecture::arm::ArmError;
    match e {
        probe_rs::Error::Probe(p) | probe_rs::Error::Arm(ArmError::Probe(p)) => probe_gone(p),
        _ => false,
    }
}

fn probe_gone(p: &probe_rs::probe::DebugProbeError) -> bool {
    use probe_rs::probe::DebugProbeError;
    matches!(
        p,
        DebugProbeError::Usb(_)
            | DebugProbeError::ProbeCouldNotBeCreated(_)
            | DebugProbeError::NotAttached
    )
}

/// Whether a lost probe is anywhere in `e`'s source chain (probe-rs's flash
/// errors box the core error that caused them).
pub fn probe_lost_in_chain(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        let lost = err
            .downcast_ref::<probe_rs::Error>()
            .is_some_and(is_probe_lost)
            || err
                .downcast_ref::<probe_rs::probe::DebugProbeError>()
                .is_some_and(probe_gone);
        if lost {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_rs::probe::DebugProbeError;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn lost_probe_is_found_below_a_boxed_flash_error() {
        let lost = probe_rs::Error::Probe(DebugProbeError::Usb(std::io::Error::other("gone")));
        assert!(is_probe_lost(&lost));
        let wrapped = Outer(Box::new(lost));
        assert!(probe_lost_in_chain(&wrapped));
        let target_side = Outer(Box::new(probe_rs::Error::Timeout));
        assert!(!probe_lost_in_chain(&target_side));
    }

    #[test]
    fn display_chain_joins_sources() {
        let e = Outer(Box::new(std::io::Error::other("inner")));
        assert_eq!(DisplayChain(&e).to_string(), "outer: inner");
    }
}
