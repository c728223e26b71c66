//! Rates as operators write them in the catalogue (`100/s`, `600/min`, `1000/h`, `5000/day`).

/// Parses a rate like `100/s`, `600/min`, `1000/h`, `5000/day` into requests per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    rate_parts(s).map(|(n, secs)| n as f64 / secs as f64)
}

/// A rate's count and its window in seconds.
pub fn rate_parts(s: &str) -> Result<(u64, u64), String> {
    let (n, unit) = s
        .split_once('/')
        .ok_or_else(|| format!("rate {s:?}: expected N/unit"))?;
    let n: u64 = n
        .trim()
        .parse()
        .map_err(|_| format!("rate {s:?}: bad count"))?;
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return Err(format!("rate {s:?}: unit must be s, min, h or day")),
    };
    if n == 0 || n > 1_000_000_000 {
        return Err(format!("rate {s:?}: count out of range"));
    }
    Ok((n, secs))
}
