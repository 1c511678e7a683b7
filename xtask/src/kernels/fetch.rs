//! Finding, downloading and keeping Debian's kernels.
//!
//! Each suite's kernel is looked up through its `linux-image-amd64`
//! metapackage, never by a package name written here: Debian renames kernel
//! packages as it updates them (the ABI number moves, and 7.x kernels come
//! split into `linux-binary-*`, `linux-modules-*` and `linux-base-*`). The
//! look-up is kept for a day; a kernel, once fetched, is kept until its suite
//! moves on. Only what booting needs is kept: the kernel image and the few
//! modules the guest loads, about 60 MB a kernel.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, bail};

use super::{
    apt::{self, Apt, Archive, Mirrors},
    boot_image, modules,
};

/// A Debian suite whose current kernel the matrix boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    /// The suite, as apt names it.
    pub name: &'static str,
    /// Where it is served from.
    pub archive: Archive,
    /// Who runs its kernel.
    pub users: &'static str,
}

/// The suites of the matrix, oldest kernel first. Security suites carry a
/// release's newest kernel build; backports carry a newer kernel for it.
pub const SUITES: [Suite; 5] = [
    Suite {
        name: "bullseye-security",
        archive: Archive::Security,
        users: "Debian 11",
    },
    Suite {
        name: "bookworm-security",
        archive: Archive::Security,
        users: "Debian 12",
    },
    Suite {
        name: "bookworm-backports",
        archive: Archive::Main,
        users: "Debian 12 backports",
    },
    Suite {
        name: "trixie-security",
        archive: Archive::Security,
        users: "Debian 13",
    },
    Suite {
        name: "trixie-backports",
        archive: Archive::Main,
        users: "Debian 13 backports",
    },
];

/// The metapackage that points at a suite's current kernel. Its `amd64`
/// flavour has the 9p file system the guests mount the host with; the
/// `cloud-amd64` one does not.
const METAPACKAGE: &str = "linux-image-amd64";

/// How long a look-up stays good before apt is asked again.
const LOOKUP_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The file that keeps the last look-up, one suite per line.
const LOOKUP_FILE: &str = "lookup.tsv";

/// A suite's current kernel, as the archive lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The suite.
    pub suite: Suite,
    /// The package version (`5.10.262-1`).
    pub version: String,
    /// The kernel's release string, `uname -r` (`5.10.0-46-amd64`).
    pub abi: String,
    /// The packages that hold its files.
    pub packages: Vec<String>,
}

/// A fetched kernel, ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Where it came from.
    pub release: Release,
    /// The image QEMU boots: an ELF `vmlinux` with a PVH entry, or the
    /// `vmlinuz` bzImage when it has none.
    pub image: PathBuf,
    /// The modules the guest loads, in load order, uncompressed.
    pub modules: Vec<PathBuf>,
}

impl Kernel {
    /// The short version, such as `5.10.262` (from the package version).
    pub fn version(&self) -> &str {
        short_version(&self.release.version)
    }
}

/// `5.10.262-1` → `5.10.262`; `7.3.4-1~bpo13+1` → `7.3.4`.
pub fn short_version(package_version: &str) -> &str {
    package_version
        .split(['-', '~', '+'])
        .next()
        .unwrap_or(package_version)
}

/// The kernel cache: a directory per kernel, the look-up, and apt's state.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache at `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Where it is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current kernel of each suite: from the last look-up if it is less
    /// than a day old (and `refresh` is off), otherwise from apt. When apt
    /// cannot be reached, an older look-up is used, with a warning.
    pub fn releases(&self, refresh: bool) -> Result<Vec<Release>> {
        let path = self.dir.join(LOOKUP_FILE);
        let saved = fs::read_to_string(&path)
            .ok()
            .and_then(|text| parse_lookup(&text));
        let age = fs::metadata(&path)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok());
        let fresh = !refresh && age.is_some_and(|age| age < LOOKUP_MAX_AGE);
        if let (true, Some(saved)) = (fresh, &saved) {
            return Ok(saved.clone());
        }
        match self.look_up() {
            Ok(releases) => {
                fs::create_dir_all(&self.dir)?;
                fs::write(&path, format_lookup(&releases))
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(releases)
            }
            Err(error) => match saved {
                Some(saved) => {
                    eprintln!(
                        "xtask: warning: looking the kernels up failed ({error:#}); using the look-up in {}",
                        path.display()
                    );
                    Ok(saved)
                }
                None => Err(error),
            },
        }
    }

    fn apt(&self) -> Result<Apt> {
        let mirrors = Mirrors::find()?;
        let suites: Vec<(Archive, &str)> = SUITES
            .iter()
            .map(|suite| (suite.archive, suite.name))
            .collect();
        Apt::new(&self.dir.join("apt"), &mirrors, &suites)
    }

    fn look_up(&self) -> Result<Vec<Release>> {
        let apt = self.apt()?;
        apt.update()?;
        let versions = apt::madison_versions(&apt.madison(METAPACKAGE)?);
        let mut releases = Vec::new();
        for suite in SUITES {
            let Some((version, _)) = versions.iter().find(|(_, from)| from == suite.name) else {
                bail!("{} has no {METAPACKAGE}", suite.name);
            };
            releases.push(release_of(&apt, suite, version)?);
        }
        Ok(releases)
    }

    /// The kernel of `release`, downloaded and prepared unless the cache
    /// has it already.
    pub fn kernel(&self, release: &Release) -> Result<Kernel> {
        let dir = self.dir.join(&release.abi);
        if let Some(kernel) = read_kernel(&dir, release) {
            return Ok(kernel);
        }
        eprintln!(
            "xtask: fetching kernel {} from {} ({})",
            release.abi,
            release.suite.name,
            release.packages.join(", ")
        );
        let staging = self.dir.join(format!(".{}.partial", release.abi));
        remove_dir(&staging)?;
        let debs = staging.join("debs");
        self.apt()?
            .download(&debs, &release.packages, &release.version)?;
        let tree = staging.join("tree");
        fs::create_dir_all(&tree)?;
        for entry in fs::read_dir(&debs)? {
            let deb = entry?.path();
            crate::process::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
        }
        let ready = staging.join("kernel");
        fs::create_dir_all(ready.join("modules"))?;
        let module_dir = first_dir(&[
            tree.join("lib/modules").join(&release.abi),
            tree.join("usr/lib/modules").join(&release.abi),
        ])
        .with_context(|| format!("no modules directory for {} in its packages", release.abi))?;
        let vmlinuz = first_file(&[
            tree.join("boot").join(format!("vmlinuz-{}", release.abi)),
            module_dir.join("vmlinuz"),
        ])
        .with_context(|| format!("no vmlinuz for {} in its packages", release.abi))?;
        boot_image::prepare(&vmlinuz, &ready)?;
        modules::prepare(&module_dir, modules::WANTED, &ready.join("modules"))?;
        fs::write(
            ready.join(RELEASE_FILE),
            format_lookup(std::slice::from_ref(release)),
        )?;
        remove_dir(&dir)?;
        fs::rename(&ready, &dir)
            .with_context(|| format!("moving {} to {}", ready.display(), dir.display()))?;
        remove_dir(&staging)?;
        read_kernel(&dir, release)
            .with_context(|| format!("{} is incomplete after fetching", dir.display()))
    }

    /// Removes kernels no suite points at any more.
    pub fn prune(&self, releases: &[Release]) -> Result<()> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in entries {
            let path = entry?.path();
            if !path.join(RELEASE_FILE).is_file() {
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !releases.iter().any(|release| release.abi == name) {
                eprintln!(
                    "xtask: removing {}: no suite serves it any more",
                    path.display()
                );
                remove_dir(&path)?;
            }
        }
        Ok(())
    }
}

/// The file in a kernel's directory that says which release it is.
const RELEASE_FILE: &str = "release.tsv";

/// A kernel directory, if it is complete and holds `release`.
fn read_kernel(dir: &Path, release: &Release) -> Option<Kernel> {
    let saved = parse_lookup(&fs::read_to_string(dir.join(RELEASE_FILE)).ok()?)?;
    let saved = saved.first()?;
    if saved.version != release.version || saved.abi != release.abi {
        return None;
    }
    let image = boot_image::find(dir)?;
    let mut modules: Vec<PathBuf> = fs::read_dir(dir.join("modules"))
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    // Their names start with their place in the load order.
    modules.sort();
    Some(Kernel {
        release: release.clone(),
        image,
        modules,
    })
}

/// Finds the kernel package of `suite` at `version` and the packages that
/// hold its files.
fn release_of(apt: &Apt, suite: Suite, version: &str) -> Result<Release> {
    let meta = apt.show(METAPACKAGE, version)?;
    let image = apt::depends(&meta)
        .into_iter()
        .find(|name| {
            name.strip_prefix("linux-image-")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .with_context(|| format!("{METAPACKAGE} {version} depends on no linux-image-<version>"))?;
    let abi = image["linux-image-".len()..].to_owned();
    // The image package, and whatever it depends on that is built for the
    // same kernel (7.x: linux-binary-*, linux-modules-*, linux-base-*).
    let suffix = format!("-{abi}");
    let mut packages = vec![image];
    let mut next = 0;
    while let Some(package) = packages.get(next).cloned() {
        next += 1;
        for dependency in apt::depends(&apt.show(&package, version)?) {
            if dependency.ends_with(&suffix) && !packages.contains(&dependency) {
                packages.push(dependency);
            }
        }
    }
    Ok(Release {
        suite,
        version: version.to_owned(),
        abi,
        packages,
    })
}

fn format_lookup(releases: &[Release]) -> String {
    releases
        .iter()
        .map(|release| {
            format!(
                "{}\t{}\t{}\t{}\n",
                release.suite.name,
                release.version,
                release.abi,
                release.packages.join(" ")
            )
        })
        .collect()
}

/// The releases of a look-up file; `None` if it is damaged or names a suite
/// the matrix no longer has.
fn parse_lookup(text: &str) -> Option<Vec<Release>> {
    text.lines()
        .map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next()?;
            let suite = *SUITES.iter().find(|suite| suite.name == name)?;
            let version = fields.next()?.to_owned();
            let abi = fields.next()?.to_owned();
            let packages: Vec<String> = fields
                .next()?
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            (!packages.is_empty()).then_some(Release {
                suite,
                version,
                abi,
                packages,
            })
        })
        .collect()
}

fn first_dir(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|path| path.is_dir()).cloned()
}

fn first_file(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|path| path.is_file()).cloned()
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Decompresses `path` by its extension (`.xz`, `.zst`, `.gz`, or none)
/// into `out`.
pub fn decompress_file(path: &Path, out: &Path) -> Result<()> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => {
            fs::copy(path, out)
                .with_context(|| format!("copying {} to {}", path.display(), out.display()))?;
        }
        Some(tool) => {
            let file =
                fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
            let status = Command::new(tool)
                .args(["-d", "-c", "-q"])
                .arg(path)
                .stdout(file)
                .stderr(Stdio::inherit())
                .status()
                .with_context(|| format!("starting {tool} (`cargo xtask setup` installs it)"))?;
            if !status.success() {
                bail!("{tool} could not decompress {} ({status})", path.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_versions() {
        assert_eq!(short_version("5.10.262-1"), "5.10.262");
        assert_eq!(short_version("7.3.4-1~bpo13+1"), "7.3.4");
        assert_eq!(short_version("6.12.95-1~bpo12+1"), "6.12.95");
    }

    #[test]
    fn a_lookup_survives_a_round_trip() {
        let releases = vec![Release {
            suite: SUITES[4],
            version: "7.3.4-1~bpo13+1".to_owned(),
            abi: "7.3.4+deb13-amd64".to_owned(),
            packages: vec![
                "linux-image-7.3.4+deb13-amd64".to_owned(),
                "linux-binary-7.3.4+deb13-amd64".to_owned(),
            ],
        }];
        assert_eq!(parse_lookup(&format_lookup(&releases)), Some(releases));
        assert_eq!(parse_lookup("buster\t1\t2\tp\n"), None);
        assert_eq!(parse_lookup("trixie-backports\t1\n"), None);
    }
}
