//! Names for errno values, from the table the daemon uses
//! (`connect_trace_common::errno`), so both name a result the same way.

/// The symbolic name of `errno` (`"ECONNREFUSED"`), `"success"` for 0, or
/// `"E<number>"` for a number Linux does not name.
pub fn name(errno: i32) -> String {
    match errno {
        0 => "success".to_owned(),
        _ => connect_trace_common::errno::name(errno)
            .map_or_else(|| format!("E{errno}"), str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::name;

    #[test]
    fn names_known_and_unknown_values() {
        assert_eq!(name(0), "success");
        assert_eq!(name(libc::ECONNREFUSED), "ECONNREFUSED");
        assert_eq!(name(libc::ENOTRECOVERABLE), "ENOTRECOVERABLE");
        assert_eq!(name(4095), "E4095");
    }
}
