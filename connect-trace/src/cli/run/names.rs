//! DNS names for `connect-trace run`: what the kernel capture needs, and
//! naming destinations from what it attached.

use anyhow::{Result, bail};
use connect_trace::{
    dns::CacheConfig,
    kernel::{Tracer, dns::DnsSettings},
    pipeline::names::DestinationNames,
};

use super::RunArgs;

/// What DNS names need from the kernel, unless `--no-dns`.
pub(super) fn dns_settings(args: &RunArgs) -> Result<Option<DnsSettings>> {
    if !args.no_dns {
        return Ok(Some(DnsSettings {
            multicast: args.dns_multicast,
            ..DnsSettings::default()
        }));
    }
    for (id, set) in [
        ("dns_multicast", args.dns_multicast),
        (
            "dns_cache_size",
            args.origins.of("dns_cache_size") != "the default",
        ),
    ] {
        if set {
            bail!(
                "{} needs DNS names, which {} turns off",
                args.origins.of(id),
                args.origins.of("no_dns")
            );
        }
    }
    Ok(None)
}

/// Names destinations from what the DNS capture attached (if it could);
/// says once why not when it could not.
pub(super) fn destination_names(tracer: &mut Tracer, args: &RunArgs) -> DestinationNames {
    if let Some(problem) = tracer.dns_problem() {
        tracing::warn!(
            "DNS names are off ({problem}): every server_name is null; `connect-trace check` says what is missing, --no-dns silences this"
        );
    }
    let ring = tracer.take_dns();
    if let Some(problem) = ring.as_ref().and_then(|ring| ring.netns_problem.as_deref()) {
        tracing::warn!(
            "DNS answers cannot be told apart by network namespace ({problem}): a name may come from another namespace's answer"
        );
    }
    let capacity = usize::try_from(args.dns_cache_size)
        .ok()
        .and_then(std::num::NonZeroUsize::new)
        .unwrap_or(std::num::NonZeroUsize::MIN);
    DestinationNames::new(
        ring,
        CacheConfig {
            capacity,
            ..CacheConfig::default()
        },
    )
}
