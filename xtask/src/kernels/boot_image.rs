//! The image QEMU boots, taken out of Debian's compressed `vmlinuz`.
//!
//! Under software emulation a bzImage spends about 8 s unpacking itself
//! before the kernel starts. The ELF kernel inside it boots straight into
//! the kernel through its PVH entry point, in about 1 s, so the matrix
//! unpacks it once, when the kernel is fetched, and keeps that. A kernel
//! without a PVH entry keeps its bzImage.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use object::{
    Endianness,
    elf::NoteType,
    read::elf::{ElfFile64, ProgramHeader as _},
};

/// The unpacked ELF kernel, in a kernel's directory.
const VMLINUX: &str = "vmlinux";

/// The bzImage, kept when its kernel has no PVH entry.
const VMLINUZ: &str = "vmlinuz";

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the note that gives the PVH entry point.
const PVH_ENTRY_NOTE: NoteType = NoteType(18);

/// The image of the kernel in `dir`, if it has one.
pub fn find(dir: &Path) -> Option<PathBuf> {
    [VMLINUX, VMLINUZ]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Writes the best image of the bzImage `vmlinuz` into `dir`.
pub fn prepare(vmlinuz: &Path, dir: &Path) -> Result<()> {
    let bzimage = fs::read(vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let elf = unpack(&bzimage).with_context(|| format!("unpacking {}", vmlinuz.display()))?;
    if has_pvh_entry(&elf) {
        fs::write(dir.join(VMLINUX), elf)?;
    } else {
        eprintln!(
            "xtask: {} has no PVH entry: booting its bzImage (slower)",
            vmlinuz.display()
        );
        fs::write(dir.join(VMLINUZ), bzimage)?;
    }
    Ok(())
}

/// Whether `data` is an ELF kernel with a PVH entry point.
fn has_pvh_entry(data: &[u8]) -> bool {
    let Ok(file) = ElfFile64::<Endianness>::parse(data) else {
        return false;
    };
    let endian = file.endian();
    file.elf_program_headers().iter().any(|header| {
        let Ok(Some(mut notes)) = header.notes(endian, data) else {
            return false;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"Xen" && note.n_type(endian) == PVH_ENTRY_NOTE {
                return true;
            }
        }
        false
    })
}

/// The compressed kernel inside a bzImage, decompressed.
fn unpack(bzimage: &[u8]) -> Result<Vec<u8>> {
    // The x86 boot protocol's setup header (Documentation/arch/x86/boot.rst).
    let u32_at = |offset: usize| -> Option<usize> {
        let bytes = bzimage.get(offset..offset + 4)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
    };
    if bzimage.get(0x202..0x206) != Some(b"HdrS") {
        bail!("not a bzImage (no HdrS signature)");
    }
    let protocol = bzimage
        .get(0x206..0x208)
        .map_or(0, |bytes| u16::from_le_bytes([bytes[0], bytes[1]]));
    if protocol < 0x208 {
        bail!("boot protocol {protocol:#x} has no payload fields (2.08 and later do)");
    }
    let setup_sectors = match bzimage.get(0x1f1).copied().unwrap_or(0) {
        0 => 4,
        sectors => usize::from(sectors),
    };
    let start = (setup_sectors + 1) * 512;
    let (Some(offset), Some(length)) = (u32_at(0x248), u32_at(0x24c)) else {
        bail!("truncated setup header");
    };
    let payload = bzimage
        .get(start + offset..start + offset + length)
        .context("payload outside the file")?;
    // The kernel's build appends the unpacked size (4 bytes) to every
    // format but gzip, which carries its own; the tools reject the extra.
    let (tool, payload) = match payload {
        [0x1f, 0x8b, ..] => ("gzip", payload),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => ("xz", trim_size(payload)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => ("zstd", trim_size(payload)),
        _ => bail!("the kernel is compressed in a format this runner does not unpack"),
    };
    decompress(tool, payload)
}

fn trim_size(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().saturating_sub(4)]
}

/// Pipes `data` through `tool -d -c`.
fn decompress(tool: &str, data: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new(tool)
        .args(["-d", "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {tool} (`cargo xtask setup` installs it)"))?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let output = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(data));
        let output = child.wait_with_output();
        (writer.join(), output)
    });
    let (written, output) = output;
    let output = output.with_context(|| format!("running {tool}"))?;
    if !output.status.success() {
        bail!(
            "{tool} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    match written {
        Ok(Ok(())) => Ok(output.stdout),
        Ok(Err(error)) => Err(error).with_context(|| format!("feeding {tool}")),
        Err(_) => bail!("the thread feeding {tool} panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_bzimage_is_refused() {
        let error = unpack(&[0; 1024]).unwrap_err();
        assert!(error.to_string().contains("HdrS"), "{error}");
    }

    #[test]
    fn a_non_elf_has_no_pvh_entry() {
        assert!(!has_pvh_entry(b"\x7fELF not really"));
    }

    #[test]
    fn elf_constants_match_the_kernel_abi() {
        assert_eq!(object::elf::PT_NOTE.0, 4);
    }
}
