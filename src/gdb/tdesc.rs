//! Target description (`qXfer:features:read:target.xml`) for the Cortex-M4F:
//! `org.gnu.gdb.arm.m-profile` (r0-r12, sp, lr, pc, xpsr),
//! `org.gnu.gdb.arm.vfp` (d0-d15, fpscr; GDB derives s0-s31 from them) and
//! `org.gnu.gdb.arm.m-system` (msp, psp, primask, basepri, faultmask,
//! control). The `regnum`s match [`super::arch::CortexMRegId`].

use gdbstub::target::ext::target_description_xml_override::TargetDescriptionXmlOverride;
use gdbstub::target::TargetResult;

use super::GdbTarget;

pub const TARGET_XML: &str = include_str!("target.xml");

/// Copy the window `offset..offset+length` of `data` into `buf`.
pub fn copy_window(data: &[u8], offset: u64, length: usize, buf: &mut [u8]) -> usize {
    let Ok(offset) = usize::try_from(offset) else {
        return 0;
    };
    if offset >= data.len() {
        return 0;
    }
    let n = length.min(buf.len()).min(data.len() - offset);
    buf[..n].copy_from_slice(&data[offset..offset + n]);
    n
}

impl TargetDescriptionXmlOverride for GdbTarget {
    fn target_description_xml(
        &self,
        annex: &[u8],
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        if annex != b"target.xml" {
            return Err(gdbstub::target::TargetError::NonFatal);
        }
        Ok(copy_window(TARGET_XML.as_bytes(), offset, length, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gdb::arch::CortexMRegId;

    /// Minimal well-formedness check: every tag opened is closed in order.
    fn check_balanced(xml: &str) -> Result<(), String> {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = xml;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let end = rest.find('>').ok_or("unterminated tag")?;
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("stray </{name}>"))?;
                if open != name {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap());
            }
            if tag.matches('"').count() % 2 != 0 {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed {stack:?}"))
        }
    }

    fn regs(xml: &str) -> Vec<(String, usize, usize)> {
        xml.lines()
            .filter(|l| l.trim_start().starts_with("<reg "))
            .map(|l| {
                let attr = |a: &str| {
                    let start = l.find(&format!(" {a}=\"")).unwrap() + a.len() + 3;
                    let len = l[start..].find('"').unwrap();
                    l[start..start + len].to_string()
                };
                (
                    attr("name"),
                    attr("regnum").parse().unwrap(),
                    attr("bitsize").parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn target_xml_is_well_formed() {
        check_balanced(TARGET_XML).unwrap();
        assert!(TARGET_XML.starts_with("<?xml version=\"1.0\"?>"));
        for feature in [
            "org.gnu.gdb.arm.m-profile",
            "org.gnu.gdb.arm.vfp",
            "org.gnu.gdb.arm.m-system",
        ] {
            assert!(TARGET_XML.contains(&format!("<feature name=\"{feature}\">")));
        }
    }

    #[test]
    fn target_xml_regnums_match_arch_register_ids() {
        let regs = regs(TARGET_XML);
        assert_eq!(regs.len(), CortexMRegId::COUNT);
        for (i, (name, regnum, bits)) in regs.iter().enumerate() {
            assert_eq!(*regnum, i, "{name} out of order");
            let id = CortexMRegId::from_regnum(*regnum).unwrap();
            assert_eq!(&id.name(), name);
            assert_eq!(*bits, id.size() * 8, "{name}");
        }
    }

    #[test]
    fn copy_window_pages_through_data() {
        let data = b"0123456789";
        let mut buf = [0u8; 4];
        assert_eq!(copy_window(data, 8, 4, &mut buf), 2);
        assert_eq!(&buf[..2], b"89");
        assert_eq!(copy_window(data, 10, 4, &mut buf), 0);
        assert_eq!(copy_window(data, u64::MAX, 4, &mut buf), 0);
        assert_eq!(copy_window(data, 0, 3, &mut buf), 3);
    }

    #[test]
    fn invalid_check_balanced_catches_mismatch() {
        assert!(check_balanced("<a><b></a></b>").is_err());
        assert!(check_balanced("<a>").is_err());
    }
}
