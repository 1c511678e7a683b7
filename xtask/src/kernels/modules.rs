//! The kernel modules a guest loads, with their dependencies, in load
//! order.
//!
//! Debian's kernel packages ship no `modules.dep` (it is made when the
//! package is installed), so dependencies are read from each module's own
//! `depends=` field with `modinfo`. Modules built into the kernel are
//! skipped.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::fetch::decompress_file;

/// The modules every guest loads, and why.
pub const WANTED: &[(&str, &str)] = &[
    ("virtio_pci", "the PCI transport of the virtio devices"),
    (
        "9pnet_virtio",
        "9p over virtio, which shares the host's files",
    ),
    (
        "9p",
        "the 9p file system the guest mounts the host's root with",
    ),
    ("nf_tables", "tests drop SYNs with nftables"),
];

/// Writes the `wanted` modules of the tree at `module_dir`
/// (`lib/modules/<release>`) and the modules they need, uncompressed, into
/// `out` as `NN-name.ko`, numbered in an order that loads each after what
/// it needs.
pub fn prepare(module_dir: &Path, wanted: &[(&str, &str)], out: &Path) -> Result<()> {
    let files = index(&module_dir.join("kernel"))?;
    let builtin = fs::read_to_string(module_dir.join("modules.builtin")).unwrap_or_default();
    let builtin: Vec<String> = builtin
        .lines()
        .filter_map(|line| Some(module_name(Path::new(line).file_name()?.to_str()?)))
        .collect();
    let mut loader = Loader {
        files: &files,
        builtin: &builtin,
        out,
        order: Vec::new(),
    };
    for (name, why) in wanted {
        loader
            .visit(name)
            .with_context(|| format!("module {name} ({why})"))?;
    }
    Ok(())
}

struct Loader<'a> {
    files: &'a HashMap<String, PathBuf>,
    builtin: &'a [String],
    out: &'a Path,
    order: Vec<String>,
}

impl Loader<'_> {
    /// Writes `name` after everything it depends on.
    fn visit(&mut self, name: &str) -> Result<()> {
        if self.order.iter().any(|done| done == name) || self.builtin.iter().any(|b| b == name) {
            return Ok(());
        }
        let Some(file) = self.files.get(name) else {
            bail!("the kernel has no module {name}, nor is it built in");
        };
        // modinfo reads only files named like modules.
        let temporary = self.out.join(format!("{name}.ko"));
        decompress_file(file, &temporary)?;
        for dependency in field(&temporary, "depends")? {
            self.visit(&dependency)
                .with_context(|| format!("needed by {name}"))?;
        }
        // Soft dependencies load first when they exist. They name crypto
        // algorithms (libcrc32c: `pre: crc32c`) whose portable
        // implementation is the module `<name>_generic`; resolving every
        // alias would need depmod over the whole tree.
        for soft in field(&temporary, "softdep")? {
            let Some(module) = [soft.clone(), format!("{soft}_generic")]
                .into_iter()
                .find(|module| self.files.contains_key(module) || self.builtin.contains(module))
            else {
                continue;
            };
            self.visit(&module)
                .with_context(|| format!("wanted first by {name}"))?;
        }
        let target = self
            .out
            .join(format!("{:02}-{name}.ko", self.order.len() + 1));
        fs::rename(&temporary, &target)?;
        self.order.push(name.to_owned());
        Ok(())
    }
}

/// Every module file under `dir`, by module name.
fn index(dir: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut files = HashMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if let Some(file_name) = path
                .file_name()
                .and_then(|name| name.to_str())
                .filter(|name| name.contains(".ko"))
            {
                files.insert(module_name(file_name), path);
            }
        }
    }
    Ok(files)
}

/// `9pnet_virtio.ko.xz` → `9pnet_virtio`; dashes in file names are
/// underscores in module names.
fn module_name(file_name: &str) -> String {
    file_name
        .split(".ko")
        .next()
        .unwrap_or(file_name)
        .replace('-', "_")
}

/// The module names in `file`'s `depends=` (`a,b`) or `softdep=`
/// (`pre: a b post: c`, of which the `pre:` ones) field.
fn field(file: &Path, name: &str) -> Result<Vec<String>> {
    let output = Command::new("modinfo")
        .args(["-F", name])
        .arg(file)
        .output()
        .context("starting modinfo (package kmod; `cargo xtask setup` installs it)")?;
    if !output.status.success() {
        bail!(
            "modinfo {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(names(name, &String::from_utf8_lossy(&output.stdout)))
}

fn names(field: &str, value: &str) -> Vec<String> {
    if field == "softdep" {
        let mut pre = false;
        let mut names = Vec::new();
        for word in value.split_whitespace() {
            match word {
                "pre:" => pre = true,
                "post:" => pre = false,
                name if pre => names.push(name.replace('-', "_")),
                _ => {}
            }
        }
        names
    } else {
        value
            .trim()
            .split(',')
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_from_file_names() {
        assert_eq!(module_name("9pnet_virtio.ko.xz"), "9pnet_virtio");
        assert_eq!(module_name("nf_tables.ko"), "nf_tables");
        assert_eq!(module_name("virtio-rng.ko.zst"), "virtio_rng");
    }

    #[test]
    fn dependencies_and_soft_dependencies() {
        assert_eq!(
            names("depends", "nfnetlink,libcrc32c\n"),
            ["nfnetlink", "libcrc32c"]
        );
        assert!(names("depends", "\n").is_empty());
        assert_eq!(names("softdep", "pre: crc32c\n"), ["crc32c"]);
        assert_eq!(names("softdep", "pre: a b-c post: d\n"), ["a", "b_c"]);
    }
}
