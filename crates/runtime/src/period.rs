//! Durations in configuration, written as people write them: `7d`, `36h`, `90m`, `30s`.

use std::time::Duration;

/// A period such as `7d`, `36h`, `90m`, `30s` or `0`.
pub fn parse_period(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: s, m, h or d (e.g. 7d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a period such as 7d, 36h, 90m or 30s"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_with_their_unit() {
        assert_eq!(parse_period("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_period(" 90m "), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_period("0"), Ok(Duration::ZERO));
        assert!(parse_period("7").is_err(), "no unit");
        assert!(parse_period("7w").is_err());
        assert!(parse_period("99999999999999999999d").is_err());
    }
}
