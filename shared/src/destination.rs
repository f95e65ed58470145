//! Destinations: which URLs a subscription may point at, and the HTTP client that reaches them.
//!
//! On AWS only public HTTPS destinations are allowed; private, loopback, link-local and cloud
//! metadata addresses are refused when the subscription is written and again when a request is
//! made (after DNS resolution, so a name that later resolves to a private address is still
//! refused). `tidings serve` allows http and loopback so integrators can test locally.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
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
/// shared, documentation, multicast or unspecified). An IPv6 address that embeds an IPv4 one
/// (IPv4-mapped and -compatible, SIIT, NAT64, 6to4, Teredo) is judged by what it embeds, since
/// that is where packets to it end up.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let v4_at = |high: u16, low: u16| Ipv4Addr::from(((high as u32) << 16) | low as u32);
    // Forms that carry an IPv4 address in their low 32 bits.
    let embeds_low_v4 = match seg {
        [0, 0, 0, 0, 0, 0xffff, ..] => true,    // ::ffff:0:0/96, IPv4-mapped
        [0, 0, 0, 0, 0, 0, ..] => true,         // ::/96, IPv4-compatible (also :: and ::1)
        [0, 0, 0, 0, 0xffff, 0, ..] => true,    // ::ffff:0:0:0/96, SIIT IPv4-translated
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => true, // 64:ff9b::/96, NAT64 well-known prefix
        _ => false,
    };
    if embeds_low_v4 {
        return is_public_v4(v4_at(seg[6], seg[7]));
    }
    match seg {
        // 6to4: the relay's IPv4 address in bits 16..48.
        [0x2002, high, low, ..] => is_public_v4(v4_at(high, low)),
        // Teredo: the server's IPv4 address in bits 32..64, the client's (inverted) in the last 32.
        [0x2001, 0, high, low, _, _, c_high, c_low] => {
            is_public_v4(v4_at(high, low)) && is_public_v4(v4_at(!c_high, !c_low))
        }
        _ => {
            let first = seg[0];
            !(ip.is_multicast()
                || (first == 0x64 && seg[1] == 0xff9b && seg[2] == 1) // 64:ff9b:1::/48, local-use NAT64
                || (first == 0x100 && seg[1..4] == [0, 0, 0]) // 100::/64, discard only
                || (first == 0x2001 && seg[1] < 0x200) // 2001::/23, IETF protocol assignments (Teredo above)
                || (first == 0x2001 && seg[1] == 0x0db8) // 2001:db8::/32, documentation
                || (first & 0xfff0) == 0x3ff0 // 3fff::/20, documentation
                || (first & 0xfe00) == 0xfc00 // fc00::/7 unique local, includes fd00:ec2::254 metadata
                || (first & 0xffc0) == 0xfe80 // fe80::/10 link-local
                || (first & 0xffc0) == 0xfec0) // fec0::/10 site-local (deprecated, still routed locally)
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

/// Resolves destination host names; on the strict policy, drops every address that is not
/// public, so the policy holds at connect time for names that resolve (or later re-resolve) to
/// private addresses.
#[derive(Clone, Copy)]
struct DestinationResolver {
    public_only: bool,
}

type Resolving = Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for DestinationResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let public_only = self.public_only;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| !public_only || is_public(a.ip())).collect();
            if allowed.is_empty() {
                return Err(std::io::Error::other(format!("{host} does not resolve to a public address")));
            }
            Ok(allowed.into_iter())
        })
    }
}

/// Default connect + total timeout of a request to a destination.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Header names as the dialects document them. On HTTP/1.1 they go out spelled exactly so:
/// names are case-insensitive by the standard, but receivers written against the real services
/// look some up case-sensitively (a PHP receiver reading `apache_request_headers()` finds
/// `X-iZettle-Signature` and nothing else). Names not listed go out in lowercase.
const DOCUMENTED_HEADER_SPELLINGS: &[&str] = &["Content-Type", "User-Agent", "X-iZettle-Signature"];

/// The `User-Agent` of every request to a destination.
pub const USER_AGENT: &str = concat!("Tidings/", env!("CARGO_PKG_VERSION"));

/// A header name as it goes out on HTTP/1.1: its documented spelling, else lowercase.
pub fn spelled_as_sent(name: &str) -> String {
    DOCUMENTED_HEADER_SPELLINGS
        .iter()
        .find(|spelling| spelling.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_ascii_lowercase(), |spelling| (*spelling).to_owned())
}

/// What a request to a destination came back with.
pub struct DestinationResponse {
    pub status: u16,
    /// The first `excerpt_limit` bytes of the body; reading stops there.
    pub excerpt: Vec<u8>,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
}

/// The HTTP client for destinations (destination checks and deliveries): one keep-alive pool per
/// process, HTTP/1.1 and HTTP/2 over rustls, no redirects (a redirect could lead to a refused
/// address), the policy enforced at DNS time, the documented header spellings on HTTP/1.1.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector<DestinationResolver>>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// The client for `policy`, with `timeout` for connecting and, separately, for the whole
    /// exchange.
    pub fn new(policy: DestinationPolicy, timeout: Duration) -> Result<HttpClient, Error> {
        let mut http = HttpConnector::new_with_resolver(DestinationResolver { public_only: !policy.allow_private });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let tls = match HttpsConnectorBuilder::new().with_native_roots() {
            Ok(builder) => builder,
            Err(err) => {
                // No trust store on this machine: plain-http destinations (local receivers) still work.
                tracing::warn!(error = %err, "no root certificates found; HTTPS destinations will fail to verify");
                let roots = rustls::RootCertStore::empty();
                HttpsConnectorBuilder::new().with_tls_config(
                    rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth(),
                )
            }
        };
        let https = tls.https_or_http().enable_http1().enable_http2().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(HttpClient { client, timeout })
    }

    /// The connect and total timeout of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs `body` with `headers` (lowercase names) to `destination` and reads at most
    /// `excerpt_limit` bytes of the answer, all within the timeout. A receiver that answers with
    /// an endless body costs neither memory nor time: the connection is dropped.
    pub async fn post(
        &self,
        destination: &Url,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
        excerpt_limit: usize,
    ) -> Result<DestinationResponse, String> {
        let uri: http::Uri = destination.as_str().parse().map_err(|e| format!("request failed: {e}"))?;
        let mut request = http::Request::post(uri)
            .header(http::header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request failed: {e}"))?;
        for (name, value) in headers {
            let value = http::HeaderValue::from_str(value).map_err(|e| format!("request failed: {e}"))?;
            request.headers_mut().insert(*name, value);
        }
        *request.extensions_mut() = documented_spellings().clone();
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| describe(&e))?;
            let status = response.status().as_u16();
            let retry_after =
                response.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let mut body = response.into_body();
            let mut excerpt = Vec::new();
            while excerpt.len() < excerpt_limit {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            let take = data.len().min(excerpt_limit - excerpt.len());
                            excerpt.extend_from_slice(&data[..take]);
                        }
                    }
                    // The status already decided the outcome; a body cut short changes nothing.
                    Some(Err(_)) | None => break,
                }
            }
            Ok(DestinationResponse { status, excerpt, retry_after })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {} ms", self.timeout.as_millis())))
    }
}

/// The request extension that makes hyper write [`DOCUMENTED_HEADER_SPELLINGS`] as spelled.
/// hyper keeps the spelling of the header names it parses (with `preserve_header_case`) in a
/// request extension, and writes a request's headers in the spelling that extension records; its
/// type is private, so one request naming every header is parsed once, in memory, for it.
fn documented_spellings() -> &'static http::Extensions {
    static SPELLINGS: std::sync::OnceLock<http::Extensions> = std::sync::OnceLock::new();
    SPELLINGS.get_or_init(|| {
        let head: String = DOCUMENTED_HEADER_SPELLINGS.iter().map(|name| format!("{name}: x\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: spelling\r\n{head}\r\n");
        let (mut client, server) = tokio::io::duplex(4096);
        let captured = std::sync::Arc::new(std::sync::Mutex::new(None));
        let keep = captured.clone();
        let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            *keep.lock().expect("spelling lock") = Some(request.extensions().clone());
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new()))))
        });
        let serve = hyper::server::conn::http1::Builder::new()
            .preserve_header_case(true)
            .header_read_timeout(None)
            .keep_alive(false)
            .serve_connection(hyper_util::rt::TokioIo::new(server), service);
        let send = async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            client.write_all(raw.as_bytes()).await.expect("in-memory write");
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
        };
        let _ = futures::executor::block_on(futures::future::join(serve, send));
        let extensions = captured.lock().expect("spelling lock").take();
        extensions.expect("hyper parsed the spelling request")
    })
}

/// Describes a failed request without the URL noise, e.g. "connection failed: Connection refused".
fn describe(err: &hyper_util::client::legacy::Error) -> String {
    let kind = if err.is_connect() { "connection failed" } else { "request failed" };
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

    /// Every IPv6 form that embeds an IPv4 address is judged by it; the special ranges are refused.
    #[test]
    fn ipv6_addresses_are_judged_by_what_they_embed() {
        let table = [
            // (address, public?)
            ("2606:4700::1111", true),
            ("2a00:1450:4001:80b::200e", true),
            ("::ffff:93.184.216.34", true),
            ("::ffff:169.254.169.254", false),
            ("::ffff:127.0.0.1", false),
            ("::93.184.216.34", true),
            ("::a9fe:a9fe", false), // IPv4-compatible 169.254.169.254
            ("::127.0.0.1", false),
            ("::", false),
            ("::1", false),
            ("::ffff:0:a9fe:a9fe", false), // SIIT 169.254.169.254
            ("64:ff9b::5db8:d822", true),  // NAT64 of 93.184.216.34
            ("64:ff9b::a9fe:a9fe", false), // NAT64 of 169.254.169.254
            ("64:ff9b::a00:1", false),     // NAT64 of 10.0.0.1
            ("64:ff9b::", false),
            ("64:ff9b:1::5db8:d822", false),           // local-use NAT64: never public
            ("2002:5db8:d822::1", true),               // 6to4 via 93.184.216.34
            ("2002:a9fe:a9fe::1", false),              // 6to4 via 169.254.169.254
            ("2002:7f00:1::1", false),                 // 6to4 via 127.0.0.1
            ("2001:0:5db8:d822:0:0:a247:dd7d", true),  // Teredo, server and client public
            ("2001:0:a9fe:a9fe::1", false),            // Teredo server 169.254.169.254
            ("2001:0:5db8:d822:0:0:f5ff:fffe", false), // Teredo client 10.0.0.1 (inverted)
            ("100::1", false),
            ("100::1:0:0:1", false),
            ("100:0:0:1::1", true), // 100::/64 is discard only; 100:0:0:1::/64 is not
            ("2001:10::1", false),
            ("2001:20::1", false),
            ("2001:2::1", false),
            ("2001:db8::1", false),
            ("3fff::1", false),
            ("fec0::1", false),
            ("fd00:ec2::254", false),
            ("fe80::1", false),
            ("ff02::1", false),
        ];
        for (address, public) in table {
            assert_eq!(is_public(address.parse().unwrap()), public, "{address}");
            let url = format!("https://[{address}]/hook");
            assert_eq!(DestinationPolicy::STRICT.check(&url).is_ok(), public, "{url}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        assert!(is_public("93.184.216.34".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
    }
}
