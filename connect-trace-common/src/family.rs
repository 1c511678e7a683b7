//! Address families: their numbers, the slots the exact counts keep them
//! in, and their labels.

/// `AF_UNSPEC`.
pub const AF_UNSPEC: u16 = 0;
/// `AF_UNIX` (`AF_LOCAL`).
pub const AF_UNIX: u16 = 1;
/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// Family slots: unspec, unix, inet, inet6, anything else (or unreadable).
pub const SLOTS: u32 = 5;
/// The slot for families other than the four named ones, and for
/// addresses whose family could not be read.
pub const OTHER: u32 = 4;

/// Labels by slot, as the metrics and records name them.
pub const LABELS: [&str; SLOTS as usize] = ["unspec", "unix", "inet", "inet6", "other"];

/// The slot of an `sa_family` value.
pub const fn slot(family: u16) -> u32 {
    match family {
        AF_UNSPEC => 0,
        AF_UNIX => 1,
        AF_INET => 2,
        AF_INET6 => 3,
        _ => OTHER,
    }
}

/// The slot of the address a connect() call passed: its first two bytes
/// are `sa_family`, when the address was read whole enough to hold them
/// (`addr_flags` 0, `addrlen` at least 2); [`OTHER`] otherwise. The kernel
/// programs and the daemon both count by this.
pub const fn slot_of_address(addr: &[u8], addrlen: i32, addr_flags: u32) -> u32 {
    if addr_flags != 0 || addrlen < 2 || addr.len() < 2 {
        return OTHER;
    }
    slot(u16::from_ne_bytes([addr[0], addr[1]]))
}

/// The label of a slot.
pub const fn label(slot: u32) -> &'static str {
    match slot {
        0 => LABELS[0],
        1 => LABELS[1],
        2 => LABELS[2],
        3 => LABELS[3],
        _ => LABELS[OTHER as usize],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_labels() {
        assert_eq!(label(slot(AF_INET)), "inet");
        assert_eq!(label(slot(AF_INET6)), "inet6");
        assert_eq!(label(slot(AF_UNIX)), "unix");
        assert_eq!(label(slot(AF_UNSPEC)), "unspec");
        assert_eq!(label(slot(17)), "other");
        assert_eq!(label(99), "other");
        let inet = AF_INET.to_ne_bytes();
        assert_eq!(slot_of_address(&inet, 16, 0), 2);
        assert_eq!(slot_of_address(&inet, 1, 0), OTHER);
        assert_eq!(slot_of_address(&inet, 16, 1), OTHER);
        assert_eq!(slot_of_address(&[], 16, 0), OTHER);
    }
}
