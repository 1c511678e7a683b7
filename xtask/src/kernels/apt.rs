//! A private apt state for looking up and downloading Debian's kernels.
//!
//! Everything apt keeps (sources, package lists, downloaded files) lives
//! under one directory of the kernel cache, and the host's sources, pins
//! and package database are ignored, so the host's apt is left as it was.
//! The mirrors are the ones the host's apt already uses, unless
//! `CONNECT_TRACE_DEBIAN_MIRROR` and `CONNECT_TRACE_DEBIAN_SECURITY_MIRROR`
//! name others.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::process;

/// The keyring that signs Debian's archives (package `debian-archive-keyring`).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Which of Debian's two archives a suite lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    /// The main archive (releases, backports).
    Main,
    /// The security archive (`<release>-security`).
    Security,
}

/// The mirror of each archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    main: String,
    security: String,
}

impl Mirrors {
    /// The mirrors named by the environment, or else those in the host's apt
    /// sources.
    pub fn find() -> Result<Self> {
        let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let main = from_env("CONNECT_TRACE_DEBIAN_MIRROR");
        let security = from_env("CONNECT_TRACE_DEBIAN_SECURITY_MIRROR");
        if let (Some(main), Some(security)) = (&main, &security) {
            return Ok(Self {
                main: main.clone(),
                security: security.clone(),
            });
        }
        let uris = host_source_uris();
        let ending = |suffix: &str| {
            uris.iter()
                .find(|uri| uri.trim_end_matches('/').ends_with(suffix))
                .map(|uri| uri.trim_end_matches('/').to_owned())
        };
        let main = main.or_else(|| ending("/debian")).context(
            "no Debian mirror in the host's apt sources: set CONNECT_TRACE_DEBIAN_MIRROR \
             (and CONNECT_TRACE_DEBIAN_SECURITY_MIRROR) to the archives' URLs",
        )?;
        // Debian's security archive sits beside the main one on its mirrors.
        let security = security
            .or_else(|| ending("/debian-security"))
            .unwrap_or_else(|| format!("{main}-security"));
        Ok(Self { main, security })
    }

    fn of(&self, archive: Archive) -> &str {
        match archive {
            Archive::Main => &self.main,
            Archive::Security => &self.security,
        }
    }
}

/// Every URI in the host's apt sources, in both the one-line and the deb822
/// formats.
fn host_source_uris() -> Vec<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut parts: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        parts.sort();
        files.extend(parts);
    }
    let mut uris = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => uris.extend(deb822_uris(&text)),
            _ => uris.extend(one_line_uris(&text)),
        }
    }
    uris
}

/// `URIs:` fields of a deb822 `.sources` file.
fn deb822_uris(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("URIs:"))
        .flat_map(|uris| uris.split_whitespace().map(str::to_owned))
        .collect()
}

/// The URI of each `deb` line of a one-line `sources.list`.
fn one_line_uris(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix("deb ")?;
            let rest = rest.trim_start();
            // Skip the options in brackets.
            let rest = match rest.strip_prefix('[') {
                Some(options) => options.split_once(']')?.1,
                None => rest,
            };
            rest.split_whitespace().next().map(str::to_owned)
        })
        .collect()
}

/// apt, confined to a directory of its own.
pub struct Apt {
    dir: PathBuf,
}

impl Apt {
    /// Prepares the state in `dir` with one source per `(archive, suite)`.
    pub fn new(dir: &Path, mirrors: &Mirrors, suites: &[(Archive, &str)]) -> Result<Self> {
        for sub in ["lists/partial", "cache/archives/partial", "empty"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let mut sources = String::new();
        for (archive, suite) in suites {
            sources.push_str(&format!(
                "deb [signed-by={KEYRING} arch=amd64] {} {suite} main\n",
                mirrors.of(*archive)
            ));
        }
        let path = dir.join("sources.list");
        fs::write(&path, sources).with_context(|| format!("writing {}", path.display()))?;
        if !Path::new(KEYRING).exists() {
            bail!("{KEYRING} is missing: install debian-archive-keyring (`cargo xtask setup`)");
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// `program` (`apt-get` or `apt-cache`) with every path pointed into the
    /// private state.
    fn command(&self, program: &str) -> Command {
        let dir = |sub: &str| self.dir.join(sub).display().to_string();
        let mut command = Command::new(program);
        for (key, value) in [
            ("Dir::Etc::SourceList", dir("sources.list")),
            ("Dir::Etc::SourceParts", dir("empty")),
            ("Dir::Etc::Preferences", "/dev/null".to_owned()),
            ("Dir::Etc::PreferencesParts", dir("empty")),
            ("Dir::State::Lists", dir("lists")),
            ("Dir::State::status", "/dev/null".to_owned()),
            ("Dir::Cache", dir("cache")),
            ("Acquire::Languages", "none".to_owned()),
            // Downloads land in directories only root can write; apt's
            // unprivileged download user could not.
            ("APT::Sandbox::User", "root".to_owned()),
        ] {
            command.arg("-o").arg(format!("{key}={value}"));
        }
        command.env("LC_ALL", "C");
        command
    }

    /// Downloads the package lists.
    pub fn update(&self) -> Result<()> {
        process::run(self.command("apt-get").args(["update", "-q"]))
    }

    /// `apt-cache madison PACKAGE`: each version and where it comes from.
    pub fn madison(&self, package: &str) -> Result<String> {
        captured(self.command("apt-cache").args(["madison", package]))
    }

    /// `apt-cache show PACKAGE=VERSION`: the first record.
    pub fn show(&self, package: &str, version: &str) -> Result<String> {
        let text = captured(
            self.command("apt-cache")
                .args(["show", &format!("{package}={version}")]),
        )?;
        Ok(text.split("\n\n").next().unwrap_or_default().to_owned())
    }

    /// Downloads `PACKAGE=VERSION` for each package into `dir`.
    pub fn download(&self, dir: &Path, packages: &[String], version: &str) -> Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        process::run(
            self.command("apt-get")
                .args(["download", "-q"])
                .args(
                    packages
                        .iter()
                        .map(|package| format!("{package}={version}")),
                )
                .current_dir(dir),
        )
    }
}

/// Runs `command`, failing with its stderr unless it exits 0.
fn captured(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// For each line of `apt-cache madison` output, the version and the suite
/// (`5.10.262-1`, `bullseye-security`), newest first as apt prints them.
pub fn madison_versions(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split('|').map(str::trim);
            let (_package, version, source) = (fields.next()?, fields.next()?, fields.next()?);
            // "http://mirror/debian bookworm-backports/main amd64 Packages"
            let suite = source.split_whitespace().nth(1)?.split('/').next()?;
            Some((version.to_owned(), suite.to_owned()))
        })
        .collect()
}

/// The package names a record's `Depends:` field lists, alternatives
/// included, without versions.
pub fn depends(record: &str) -> Vec<String> {
    let mut field = String::new();
    let mut inside = false;
    for line in record.lines() {
        if let Some(value) = line.strip_prefix("Depends:") {
            field.push_str(value);
            inside = true;
        } else if inside && line.starts_with([' ', '\t']) {
            field.push_str(line);
        } else {
            inside = false;
        }
    }
    field
        .split([',', '|'])
        .filter_map(|entry| entry.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_in_both_formats() {
        let deb822 = "Types: deb\nURIs: http://m.invalid/debian\nSuites: bookworm\n\n\
                      Types: deb\nURIs: http://m.invalid/debian-security/\nSuites: x\n";
        assert_eq!(
            deb822_uris(deb822),
            [
                "http://m.invalid/debian",
                "http://m.invalid/debian-security/"
            ]
        );
        let one_line = "# comment\ndeb [signed-by=/k.gpg arch=amd64] http://m.invalid/debian bookworm main\n\
                        deb-src http://m.invalid/debian bookworm main\n\
                        deb http://s.invalid/debian-security bookworm-security main\n";
        assert_eq!(
            one_line_uris(one_line),
            [
                "http://m.invalid/debian",
                "http://s.invalid/debian-security"
            ]
        );
    }

    #[test]
    fn madison_lines_give_version_and_suite() {
        let text = "linux-image-amd64 | 7.3.4-1~bpo13+1 | http://m.invalid/debian trixie-backports/main amd64 Packages\n\
                    linux-image-amd64 |  6.1.192-3 | http://m.invalid/debian-security bookworm-security/main amd64 Packages\n";
        assert_eq!(
            madison_versions(text),
            [
                ("7.3.4-1~bpo13+1".to_owned(), "trixie-backports".to_owned()),
                ("6.1.192-3".to_owned(), "bookworm-security".to_owned()),
            ]
        );
    }

    #[test]
    fn depends_lists_names_without_versions() {
        let record = "Package: linux-image-7.3.4+deb13-amd64\n\
                      Depends: dracut | initramfs-tools (>= 0.120+deb8u2), linux-binary-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1),\n linux-modules-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1)\n\
                      Size: 1900\n";
        assert_eq!(
            depends(record),
            [
                "dracut",
                "initramfs-tools",
                "linux-binary-7.3.4+deb13-amd64",
                "linux-modules-7.3.4+deb13-amd64",
            ]
        );
    }
}
