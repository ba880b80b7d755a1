//! Where a restream may push (API.md "Live"): syntax checks of the RTMP
//! endpoint and key (400), then, before every connect and restart, the
//! resolved addresses, port and host allow-list (403). The output URL
//! handed to ffmpeg carries the checked IP for `rtmp://`, so a DNS answer
//! that changes between the check and the connect cannot redirect the
//! push; `rtmps://` keeps the host name because TLS needs it (SNI).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::Url;

use crate::config::LiveConfig;

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// 400: not an `rtmp(s)://host[:port]/app` URL, or a bad key.
    #[error("{0}")]
    Invalid(&'static str),
    /// 403: a policy refuses it.
    #[error("{0}")]
    Refused(&'static str),
    /// 400: the host does not resolve (nothing to check, nothing to push to).
    #[error("the RTMP host does not resolve")]
    Unresolved,
}

/// A syntactically valid destination (the key is a secret).
#[derive(Clone)]
pub struct Destination {
    url: Url,
    host: String,
    port: u16,
    key: String,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Destination({}:{}, key ***)", self.host, self.port)
    }
}

/// Characters an RTMP key may not hold besides the printable-ASCII rule.
const KEY_FORBIDDEN: [char; 4] = ['/', '?', '#', '%'];

impl Destination {
    /// Checks `rtmpEndpoint` and `rtmpKey` (400 on failure).
    pub fn parse(endpoint: &str, key: &str) -> Result<Self, DestinationError> {
        let valid_key = (1..=256).contains(&key.len())
            && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
            && !key.contains(KEY_FORBIDDEN);
        if !valid_key {
            return Err(DestinationError::Invalid(
                "rtmpKey must be 1-256 printable ASCII characters without / ? # %",
            ));
        }
        let url = Url::parse(endpoint)
            .map_err(|_| DestinationError::Invalid("rtmpEndpoint is not a URL"))?;
        let default_port = match url.scheme() {
            "rtmp" => 1935,
            "rtmps" => 443,
            _ => {
                return Err(DestinationError::Invalid(
                    "rtmpEndpoint must be rtmp:// or rtmps://",
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DestinationError::Invalid(
                "rtmpEndpoint must not carry credentials; use rtmpKey",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(DestinationError::Invalid(
                "rtmpEndpoint must not have a query or fragment",
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(DestinationError::Invalid("rtmpEndpoint has no host")),
        };
        if url.path().trim_matches('/').is_empty() {
            return Err(DestinationError::Invalid(
                "rtmpEndpoint needs an application path (rtmp://host/app)",
            ));
        }
        let port = url.port().unwrap_or(default_port);
        Ok(Self {
            url,
            host,
            port,
            key: key.to_string(),
        })
    }

    /// The host, for status and logs (never the key).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The key, for redaction.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The endpoint as given, for redaction.
    pub fn endpoint(&self) -> &str {
        self.url.as_str()
    }

    /// Resolves and checks the destination; answers the URL ffmpeg pushes to.
    pub async fn check(&self, policy: &LiveConfig) -> Result<String, DestinationError> {
        if !policy.allowed_ports.contains(&self.port) {
            return Err(DestinationError::Refused(
                "the RTMP port is not in live.allowed_ports",
            ));
        }
        if !policy.allowed_hosts.is_empty()
            && !policy
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&self.host))
        {
            return Err(DestinationError::Refused(
                "the RTMP host is not in live.allowed_hosts",
            ));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|_| DestinationError::Unresolved)?
            .collect();
        let first = *addrs.first().ok_or(DestinationError::Unresolved)?;
        // Every answer must pass: ffmpeg might connect to any of them.
        if !policy.allow_private && addrs.iter().any(|a| is_private(a.ip())) {
            return Err(DestinationError::Refused(
                "the RTMP host resolves to a private, loopback or reserved address",
            ));
        }
        Ok(self.output_url(first.ip()))
    }

    /// `{endpoint}/{key}`, with the checked IP in place of the host for rtmp://.
    fn output_url(&self, ip: IpAddr) -> String {
        let mut url = self.url.clone();
        if url.scheme() == "rtmp" {
            // Cannot fail for an rtmp URL that has a host.
            let _ = url.set_ip_host(ip);
        }
        let _ = url.set_port(Some(self.port));
        let base = url.as_str().trim_end_matches('/');
        format!("{base}/{}", self.key)
    }
}

/// Addresses a push must not reach unless `live.allow_private`: loopback,
/// RFC 1918, `fc00::/7`, link-local, `100.64/10`, multicast, unspecified
/// and broadcast (and their IPv4-mapped IPv6 forms).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private_v4(v4),
            None => is_private_v6(v6),
        },
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || (a == 100 && (64..128).contains(&b))
        || a == 0
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// Replaces every occurrence of the secret parts with `***`.
pub fn redact(text: &str, destination: &Destination, output_url: Option<&str>) -> String {
    let mut out = text.to_string();
    if let Some(url) = output_url {
        out = out.replace(url, "***");
    }
    out.replace(destination.key(), "***")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_private: bool) -> LiveConfig {
        LiveConfig {
            ffmpeg_path: "ffmpeg".into(),
            x264_preset: "veryfast".into(),
            video_kbps: 2500,
            audio_kbps: 128,
            allow_private,
            allowed_hosts: vec![],
            allowed_ports: vec![1935, 443],
            no_source_grace_s: 30,
        }
    }

    #[test]
    fn endpoint_and_key_syntax() {
        let ok = Destination::parse("rtmp://example.com/live", "abc-123").unwrap();
        assert_eq!((ok.host(), ok.port), ("example.com", 1935));
        assert_eq!(
            Destination::parse("rtmps://Example.com/app", "k")
                .unwrap()
                .port,
            443
        );
        for (endpoint, key) in [
            ("http://example.com/live", "k"),
            ("rtmp://example.com", "k"),
            ("rtmp://example.com/", "k"),
            ("rtmp://u:p@example.com/live", "k"),
            ("rtmp://example.com/live?x=1", "k"),
            ("not a url", "k"),
            ("rtmp://example.com/live", ""),
            ("rtmp://example.com/live", "a/b"),
            ("rtmp://example.com/live", "a%20"),
            ("rtmp://example.com/live", "sp ace"),
            ("rtmp://example.com/live", &"k".repeat(257)),
        ] {
            assert!(
                matches!(
                    Destination::parse(endpoint, key),
                    Err(DestinationError::Invalid(_))
                ),
                "{endpoint} {key}"
            );
        }
    }

    #[test]
    fn address_classes() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "100.128.0.1", "2001:db8::1", "8.8.8.8"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn loopback_needs_allow_private_and_ports_are_listed() {
        let d = Destination::parse("rtmp://127.0.0.1:1935/live", "key").unwrap();
        assert!(matches!(
            d.check(&policy(false)).await,
            Err(DestinationError::Refused(_))
        ));
        assert_eq!(
            d.check(&policy(true)).await.unwrap(),
            "rtmp://127.0.0.1:1935/live/key"
        );
        let other = Destination::parse("rtmp://127.0.0.1:19350/live", "key").unwrap();
        assert!(matches!(
            other.check(&policy(true)).await,
            Err(DestinationError::Refused(_))
        ));
        let mut listed = policy(true);
        listed.allowed_hosts = vec!["example.org".into()];
        assert!(matches!(
            d.check(&listed).await,
            Err(DestinationError::Refused(_))
        ));
    }

    #[test]
    fn redaction_hides_key_and_url() {
        let d = Destination::parse("rtmp://127.0.0.1/live", "s3cret").unwrap();
        let url = "rtmp://127.0.0.1:1935/live/s3cret";
        let text = format!("{url}: Connection refused (key s3cret)");
        assert_eq!(
            redact(&text, &d, Some(url)),
            "***: Connection refused (key ***)"
        );
    }
}
