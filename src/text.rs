//! Numbers in words for the log: counts, sizes and rates.

use std::time::Duration;

/// `1 store path`, `2 store paths`: a count and a noun that takes an `s`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// A throughput in the units of [`human`], so that a line never mixes MiB
/// with MB/s: `212.3 MiB/s`.
pub fn per_second(bytes: u64, elapsed: Duration) -> String {
    format!("{:.1} MiB/s", bytes as f64 / (1u64 << 20) as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// A byte count for people: `512 B`, `3.4 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates_read_as_english_in_one_unit() {
        assert_eq!(count(1, "store path"), "1 store path");
        assert_eq!(count(0, "worker"), "0 workers");
        assert_eq!(count(2, "worker"), "2 workers");
        assert_eq!(per_second(3 << 20, Duration::from_secs(2)), "1.5 MiB/s");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
