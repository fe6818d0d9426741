//! Connection URLs without their passwords, for error messages.

/// `url` without the userinfo's password (`scheme://user:password@host` shows as
/// `scheme://user@host`, `scheme://:password@host` as `scheme://host`) and without the query
/// parameters whose name `is_password` accepts.
pub(crate) fn url_without_password(url: &str, is_password: fn(&str) -> bool) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    // The last `@` ends the userinfo (an unencoded `@` in a password is taken as part of it).
    let rest = match rest.rfind('@') {
        Some(at) => match rest[..at].split(':').next().unwrap_or_default() {
            "" => rest[at + 1..].to_owned(),
            user => format!("{user}{}", &rest[at..]),
        },
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !is_password(pair.split('=').next().unwrap_or_default()))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => rest,
    };
    format!("{scheme}{rest}")
}
