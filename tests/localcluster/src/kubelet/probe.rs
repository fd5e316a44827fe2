//! Probes as the kubelet's prober workers run them: httpGet and tcpSocket to the pod IP, exec
//! inside the container, with initial delay, period, timeout and success/failure thresholds.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::error::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The probes whose failure restarts the container.
pub enum Kind {
    Startup,
    Liveness,
}

/// The thresholds of one probe, with upstream's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe) -> Self {
        let secs = |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        let count = |v: Option<i32>, default: i32| v.unwrap_or(default).max(1) as u32;
        Self {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// The result a worker publishes, changed only after a threshold of equal results in a row
/// (as `prober/worker.go` `doProbe`).
#[derive(Debug, Clone)]
pub struct Tracker {
    timing: Timing,
    last: Option<bool>,
    run: u32,
    published: Option<bool>,
}

impl Tracker {
    pub fn new(timing: Timing) -> Self {
        Self { timing, last: None, run: 0, published: None }
    }

    /// Records one probe result; returns the published result when it changes.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if self.last == Some(ok) {
            self.run += 1;
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok { self.timing.success_threshold } else { self.timing.failure_threshold };
        if self.run < threshold || self.published == Some(ok) {
            return None;
        }
        self.published = Some(ok);
        Some(ok)
    }
}

/// What to probe, resolved against the container (named ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Http { port: u16, path: String, scheme_https: bool, headers: Vec<(String, String)> },
    Tcp { port: u16 },
    Exec { command: Vec<String> },
    Grpc { port: u16 },
}

fn port(container: &Container, port: &IntOrString) -> Result<u16, ConfigError> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| ConfigError::UnknownPort(p.to_string())),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| ConfigError::UnknownPort(name.clone())),
    }
}

pub fn action(container: &Container, probe: &Probe) -> Result<Action, ConfigError> {
    if let Some(http) = &probe.http_get {
        let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
        return Ok(Action::Http {
            port: port(container, &http.port)?,
            path: if path.starts_with('/') { path } else { format!("/{path}") },
            scheme_https: http.scheme.as_deref() == Some("HTTPS"),
            headers: http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect(),
        });
    }
    if let Some(tcp) = &probe.tcp_socket {
        return Ok(Action::Tcp { port: port(container, &tcp.port)? });
    }
    if let Some(exec) = &probe.exec {
        return Ok(Action::Exec { command: exec.command.clone().unwrap_or_default() });
    }
    if let Some(grpc) = &probe.grpc {
        return Ok(Action::Grpc {
            port: u16::try_from(grpc.port).map_err(|_| ConfigError::UnknownPort(grpc.port.to_string()))?,
        });
    }
    Err(ConfigError::UnsupportedField("probe without a handler".to_owned()))
}

/// An HTTP probe: 200 <= status < 400 succeeds; redirects are not followed, as upstream
/// treats a redirect to another host as success with a warning.
pub async fn http(
    ip: Ipv4Addr,
    port: u16,
    path: &str,
    https: bool,
    headers: &[(String, String)],
    timeout: Duration,
) -> bool {
    let scheme = if https { "https" } else { "http" };
    let Ok(client) = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .build()
    else {
        return false;
    };
    let mut request = client.get(format!("{scheme}://{ip}:{port}{path}")).header("User-Agent", "kube-probe/1.33");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) => (200..400).contains(&response.status().as_u16()),
        Err(_) => false,
    }
}

pub async fn tcp(ip: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect((ip, port))).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn a_result_is_published_only_after_its_threshold_of_equal_results_in_a_row() {
        let mut t = Tracker::new(timing(2, 3));
        let published: Vec<Option<bool>> =
            [true, false, true, true, true, false, false, true, false, false, false, false]
                .iter()
                .map(|ok| t.observe(*ok))
                .collect();
        assert_eq!(published, [None, None, None, Some(true), None, None, None, None, None, None, Some(false), None]);
    }

    #[test]
    fn unset_fields_take_the_documented_defaults() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t, Timing { initial_delay: Duration::ZERO, period: Duration::from_secs(10), ..timing(1, 3) });
    }
}
