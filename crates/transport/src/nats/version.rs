//! The oldest nats-server fedengine accepts, and the check against a server's version.

/// The oldest nats-server accepted. 2.9 silently ignores consumer and stream options the
/// client relies on and its key-value responses do not parse (see the module docs).
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 10, 0);

/// Parses `major.minor.patch` with an optional `-pre`/`+build` suffix (and a leading `v`).
pub fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let version = version.trim();
    let version = version.strip_prefix('v').unwrap_or(version);
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// `Ok` when `version` is at least [`MIN_SERVER_VERSION`]; otherwise a message naming the
/// version found and the minimum.
pub fn check_server_version(version: &str) -> Result<(), String> {
    let (a, b, c) = MIN_SERVER_VERSION;
    match parse_version(version) {
        Some(found) if found >= MIN_SERVER_VERSION => Ok(()),
        Some(_) => Err(format!(
            "nats-server {version} is too old: fedengine needs nats-server {a}.{b}.{c} or newer"
        )),
        None => Err(format!(
            "cannot read the nats-server version `{version}`: fedengine needs nats-server {a}.{b}.{c} or newer"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_versions_numerically() {
        assert_eq!(parse_version("2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("v2.10.0-beta.3"), Some((2, 10, 0)));
        assert_eq!(parse_version("2.11"), Some((2, 11, 0)));
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("2.x.1"), None);
        assert!(check_server_version("2.15.1").is_ok());
        assert!(check_server_version("2.10.0").is_ok());
        assert!(check_server_version("3.0.0").is_ok());
        let old = check_server_version("2.9.10").expect_err("2.9 is too old");
        assert!(old.contains("2.9.10") && old.contains("2.10.0"), "{old}");
        // "2.9.10" > "2.10.0" as strings; numerically it is older.
        assert!(check_server_version("2.9.99").is_err());
        assert!(check_server_version("1.4.1").is_err());
        let unreadable = check_server_version("").expect_err("empty");
        assert!(unreadable.contains("2.10.0"), "{unreadable}");
    }
}
