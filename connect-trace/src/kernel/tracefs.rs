//! Finding (and if need be mounting) tracefs, and reading tracepoint record
//! layouts from its `format` files.
//!
//! Tracepoint field offsets are read here at load time instead of being
//! compiled into the kernel programs, so the programs do not depend on the
//! layout of the kernel they were built on.

use std::{
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// Where tracefs lives on current kernels.
pub const DEFAULT_MOUNT: &str = "/sys/kernel/tracing";
/// Where it lives when only debugfs exposes it.
pub const DEBUGFS_MOUNT: &str = "/sys/kernel/debug/tracing";

/// Problems with tracefs.
#[derive(Debug, Error)]
pub enum TracefsError {
    /// tracefs was not mounted and mounting it failed.
    #[error("tracefs is not mounted and mounting it at {path} failed: {source}")]
    Mount {
        /// Where the mount was tried.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// A tracepoint's format file could not be read.
    #[error("tracepoint {category}/{name} is not available ({path}): {source}")]
    MissingTracepoint {
        /// Tracepoint category.
        category: String,
        /// Tracepoint name.
        name: String,
        /// The format file.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// A field was missing from a tracepoint's format.
    #[error("tracepoint {category}/{name} has no field `{field}`")]
    MissingField {
        /// Tracepoint category.
        category: String,
        /// Tracepoint name.
        name: String,
        /// The field looked for.
        field: String,
    },
}

/// A mounted tracefs.
#[derive(Debug, Clone)]
pub struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// A tracefs at `root` (for example a test fixture); not checked.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The mounted tracefs, mounting it at `/sys/kernel/tracing` if neither
    /// usual place has one (a fresh boot often has none until a tool asks).
    pub fn find_or_mount() -> Result<Self, TracefsError> {
        for candidate in [DEFAULT_MOUNT, DEBUGFS_MOUNT] {
            if Path::new(candidate).join("events").is_dir() {
                return Ok(Self::at(candidate));
            }
        }
        mount(Path::new(DEFAULT_MOUNT)).map_err(|source| TracefsError::Mount {
            path: PathBuf::from(DEFAULT_MOUNT),
            source,
        })?;
        Ok(Self::at(DEFAULT_MOUNT))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The byte offset of `field` in the record of `category/name`.
    pub fn field_offset(
        &self,
        category: &str,
        name: &str,
        field: &str,
    ) -> Result<u32, TracefsError> {
        let path = self
            .root
            .join("events")
            .join(category)
            .join(name)
            .join("format");
        let format =
            fs::read_to_string(&path).map_err(|source| TracefsError::MissingTracepoint {
                category: category.to_owned(),
                name: name.to_owned(),
                path: path.clone(),
                source,
            })?;
        parse_field_offset(&format, field).ok_or_else(|| TracefsError::MissingField {
            category: category.to_owned(),
            name: name.to_owned(),
            field: field.to_owned(),
        })
    }
}

/// Mounts a tracefs at `target`.
pub fn mount(target: &Path) -> io::Result<()> {
    let target = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let fstype = c"tracefs";
    // SAFETY: all pointers are valid NUL-terminated strings; no data.
    let ret = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Finds `offset:N` on the line declaring `field` in a tracefs format file:
/// `\tfield:struct sockaddr * uservaddr;\toffset:24;\tsize:8;\tsigned:0;`
fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let declaration = parts.next()?.strip_prefix("field:")?;
        // The name is the last word, after any pointer stars; arrays keep
        // their brackets (`daddr[4]`).
        let declared = declaration.rsplit([' ', '*']).next()?;
        let declared = declared.split('[').next()?;
        if declared != field {
            return None;
        }
        parts.find_map(|part| part.strip_prefix("offset:")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTER: &str = "name: sys_enter_connect
ID: 2230
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int fd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:struct sockaddr * uservaddr;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int addrlen;\toffset:32;\tsize:8;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"fd: 0x%08lx\"";

    #[test]
    fn finds_offsets() {
        assert_eq!(parse_field_offset(ENTER, "fd"), Some(16));
        assert_eq!(parse_field_offset(ENTER, "uservaddr"), Some(24));
        assert_eq!(parse_field_offset(ENTER, "addrlen"), Some(32));
        assert_eq!(parse_field_offset(ENTER, "daddr_v6"), Some(56));
        assert_eq!(parse_field_offset(ENTER, "common_pid"), Some(4));
    }

    #[test]
    fn missing_fields_are_none() {
        assert_eq!(parse_field_offset(ENTER, "ret"), None);
        assert_eq!(parse_field_offset(ENTER, "addr"), None);
        assert_eq!(parse_field_offset("", "fd"), None);
    }

    #[test]
    fn missing_tracepoint_names_it() {
        let dir = std::env::temp_dir().join(format!("ct-tracefs-{}", std::process::id()));
        let error = Tracefs::at(&dir)
            .field_offset("syscalls", "sys_enter_connect", "fd")
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("syscalls/sys_enter_connect"), "{message}");
    }
}
