//! Kubernetes resource quantities (`500m`, `512Mi`, `1e3`) as numbers, for cgroup limits.

/// The value of a quantity in base units (cores, bytes), or `None` if it is not one.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_documents_them() {
        for (q, v) in [
            ("500m", 0.5),
            ("2", 2.0),
            ("0.25", 0.25),
            ("512Mi", 536870912.0),
            ("1Gi", 1073741824.0),
            ("128M", 128e6),
            ("1e3", 1000.0),
            ("100k", 1e5),
        ] {
            assert_eq!(parse(q), Some(v), "{q}");
        }
        for bad in ["", "abc", "12Q", "1.2.3"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
