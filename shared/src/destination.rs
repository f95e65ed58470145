//! Destinations: which URLs a subscription may point at, and the HTTP client that reaches them.
//!
//! On AWS only public HTTPS destinations are allowed; private, loopback, link-local and cloud
//! metadata addresses are refused when the subscription is written and again when a request is
//! made (after DNS resolution, so a name that later resolves to a private address is still
//! refused). `tidings serve` allows http and loopback so integrators can test locally.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

use crate::Error;

/// What destinations are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// Accept `http://` as well as `https://`.
    pub allow_http: bool,
    /// Accept loopback and private addresses.
    pub allow_private: bool,
}

impl DestinationPolicy {
    /// Public HTTPS only: the AWS deployment.
    pub const STRICT: DestinationPolicy = DestinationPolicy { allow_http: false, allow_private: false };
    /// `tidings serve`: http and local receivers allowed.
    pub const LOCAL: DestinationPolicy = DestinationPolicy { allow_http: true, allow_private: true };

    /// Parses and checks a destination URL. The error message says what is wrong; the caller
    /// decides the status code its dialect uses.
    pub fn check(&self, raw: &str) -> Result<Url, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("destination must not be empty".into());
        }
        // URL parsing would silently drop tabs and newlines; refuse them (and every other
        // control character) so what is stored, shown and mailed is what was checked.
        if raw.chars().any(char::is_control) {
            return Err("destination must not contain control characters".into());
        }
        let url = Url::parse(raw).map_err(|e| format!("destination is not a valid URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ if self.allow_http => return Err("destination must be an http or https URL".into()),
            _ => return Err("destination must be a valid HTTPS URL".into()),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("destination must not contain credentials".into());
        }
        let host = url.host().ok_or("destination must name a host")?;
        if !self.allow_private {
            let refused = match host {
                Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
                Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
                Host::Domain(name) => {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal")
                }
            };
            if refused {
                return Err("destination must be a public address".into());
            }
        }
        Ok(url)
    }
}

/// Whether an address is publicly routable (not loopback, private, link-local, metadata,
/// shared, documentation, multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, includes fd00:ec2::254 metadata
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // 169.254/16, includes the 169.254.169.254 metadata service
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

/// A DNS resolver that drops non-public addresses, so the check holds at connect time.
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} does not resolve to a public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Default connect + total timeout of a request to a destination.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client for destinations: one keep-alive pool per process, no redirects (a redirect
/// could lead to a refused address), the policy enforced at DNS time.
pub fn http_client(policy: DestinationPolicy, timeout: Duration) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("Tidings/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60));
    if !policy.allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
    }
    builder.build().map_err(|e| Error::internal(format!("cannot build HTTP client: {e}")))
}

/// Describes a failed request without the URL noise, e.g. "connection refused" or "timed out".
pub fn describe_request_error(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_redirect() {
        "redirects are not followed"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_policy_wants_public_https() {
        let p = DestinationPolicy::STRICT;
        assert!(p.check("https://webhook.site/f62e2311-1232-4d8f-b75e-80e9ce013dd4").is_ok());
        for bad in [
            "",
            "   ",
            "not a url",
            "http://example.com/hook",
            "ftp://example.com/hook",
            "https://user:pw@example.com/",
            "https://127.0.0.1/hook",
            "https://10.1.2.3/",
            "https://172.20.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://[::1]/",
            "https://[fd00:ec2::254]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://localhost/",
            "https://api.localhost/",
            "https://0.0.0.0/",
        ] {
            assert!(p.check(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(p.check("http://example.com").unwrap_err().contains("HTTPS"));
    }

    #[test]
    fn local_policy_allows_http_and_loopback_but_not_other_schemes() {
        let p = DestinationPolicy::LOCAL;
        assert!(p.check("http://127.0.0.1:9000/hook").is_ok());
        assert!(p.check("http://localhost:9000/hook").is_ok());
        assert!(p.check("ftp://example.com").is_err());
        assert!(p.check("").is_err());
    }

    #[test]
    fn public_addresses_pass() {
        assert!(is_public("93.184.216.34".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
    }
}
