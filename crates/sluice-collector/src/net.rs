//! The client's address: the peer, or — only when the peer is a configured trusted proxy — the
//! nearest untrusted address in `X-Forwarded-For`.

use axum::http::HeaderMap;
use std::net::IpAddr;
use std::str::FromStr;

/// A list of trusted proxy addresses or CIDR ranges (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let (addr, bits) = match entry.split_once('/') {
                Some((addr, bits)) => (addr, Some(bits)),
                None => (entry.as_str(), None),
            };
            let addr = IpAddr::from_str(addr.trim()).map_err(|_| {
                format!("trusted proxy `{entry}` is not an IP address or CIDR range")
            })?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(bits) => bits
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| {
                        format!("trusted proxy `{entry}` has an invalid prefix length")
                    })?,
                None => max,
            };
            ranges.push((addr, bits));
        }
        Ok(Self { ranges })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.ranges
            .iter()
            .any(|(net, bits)| in_range(ip, canonical(*net), *bits))
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits as u32)
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits as u32)
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The address to record as `context.ip`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| IpAddr::from_str(part.trim()).ok())
        .collect();
    // Walk from the nearest hop outwards; the first address we do not trust is the client.
    forwarded
        .into_iter()
        .rev()
        .map(canonical)
        .find(|ip| !trusted.contains(*ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", xff.parse().expect("header"));
        headers
    }

    #[test]
    fn forwarded_for_is_only_believed_from_trusted_proxies() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).expect("parse");
        let spoofed = headers("1.2.3.4");
        assert_eq!(
            client_ip("203.0.113.9".parse().unwrap(), &spoofed, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let chain = headers("1.2.3.4, 198.51.100.7, 10.1.1.1");
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &chain, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("::1".parse().unwrap(), &headers("garbage"), &trusted),
            "::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(
                "::ffff:10.0.0.2".parse().unwrap(),
                &headers("198.51.100.7"),
                &trusted
            ),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }
}
