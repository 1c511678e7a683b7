//! The loader's settings ([`Config`]), and reading tracepoint fields at the
//! offsets it found.

use aya_ebpf::{EbpfContext as _, programs::TracePointContext};
use connect_trace_common::config::Config;

/// Filled in by the loader before loading (`connect_trace_common::config`).
/// It sits in read-only data that the kernel freezes, so the verifier
/// knows every value and prunes the branches they rule out.
#[unsafe(no_mangle)]
pub static CONFIG: Config = Config::DEFAULT;

/// Reads one field of [`CONFIG`]. The volatile read keeps the compiler from
/// folding in the default value, which the loader replaces.
macro_rules! config {
    ($($field:ident).+) => {
        // SAFETY: `CONFIG` is a valid, aligned static for the whole
        // program's life; reading a field of it cannot fault.
        unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!(
                $crate::config::CONFIG.$($field).+
            ))
        }
    };
}
pub(crate) use config;

/// Whether the programs must do nothing (the benchmark's floor); the
/// verifier drops everything after a `true`.
#[inline(always)]
pub fn empty() -> bool {
    config!(empty_programs) != 0
}

/// Reads a tracepoint field. On kernels whose record layout is the usual
/// one this is a plain load from the context at the constant offset
/// `USUAL` (the verifier only allows constant offsets there); otherwise a
/// helper call at the `offset` the loader read from tracefs.
#[inline(always)]
pub fn field<T: Copy, const USUAL: usize>(ctx: &TracePointContext, offset: u32) -> Result<T, i64> {
    if config!(layout_usual) == 1 {
        // SAFETY: the loader set `layout_usual` only after tracefs showed a
        // field of this size at `USUAL` in this tracepoint's record, which
        // the context points to.
        Ok(unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(USUAL).cast::<T>()) })
    } else {
        // SAFETY: `read_at` goes through bpf_probe_read_kernel, which checks
        // the address; the offset is tracefs's for this field.
        unsafe { ctx.read_at(offset as usize) }.map_err(i64::from)
    }
}
