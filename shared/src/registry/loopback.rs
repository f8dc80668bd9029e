//! Which hosts are spoken to over plain HTTP: loopback ones.

use std::net::IpAddr;

/// True for hosts on the loopback interface: `localhost`, `127.0.0.0/8` and `[::1]`, with or
/// without a port. Only these (and hosts marked insecure) are spoken to over plain HTTP.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_loopback() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "gcr.io",
            "10.0.0.1:5000",
            "[2001:db8::1]:443",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
