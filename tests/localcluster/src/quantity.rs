//! Kubernetes resource quantities (`500m`, `256Mi`, `1.5G`, `2e3`) as numbers: CPU in cores,
//! everything else in base units, as kube-state-metrics reports them and cgroup limits need them.

/// The value of a quantity string, or None when it is not one.
pub fn parse(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let value: f64 = number.parse().ok()?;
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
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        exponent => 10f64.powi(exponent.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    Some(value * factor)
}

/// kube-state-metrics' `unit` label for a resource name.
pub fn unit(resource: &str) -> &'static str {
    match resource {
        "cpu" => "core",
        "memory" | "ephemeral-storage" | "storage" => "byte",
        r if r.starts_with("hugepages-") => "byte",
        _ => "integer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_with_decimal_binary_and_exponent_suffixes() {
        let cases = [
            ("500m", Some(0.5)),
            ("2", Some(2.0)),
            ("1.5", Some(1.5)),
            ("256Mi", Some(268_435_456.0)),
            ("1Gi", Some(1_073_741_824.0)),
            ("1G", Some(1e9)),
            ("128k", Some(128_000.0)),
            ("2e3", Some(2000.0)),
            ("100n", Some(1e-7)),
            ("lots", None),
            ("5Qi", None),
        ];
        for (input, expected) in cases {
            let close = match (parse(input), expected) {
                (Some(got), Some(want)) => (got - want).abs() <= want.abs() * 1e-12,
                (got, want) => got == want,
            };
            assert!(close, "{input}: {:?} != {expected:?}", parse(input));
        }
    }

    #[test]
    fn cpu_is_counted_in_cores_and_memory_in_bytes() {
        assert_eq!((unit("cpu"), unit("memory"), unit("nvidia.com/gpu")), ("core", "byte", "integer"));
    }
}
