use super::*;

fn sent(at: f64, latency_ms: f64, status: u16) -> Sent {
    Sent { at, latency: Some(latency_ms / 1000.0), status: Some(status) }
}

#[test]
fn a_compressed_row_holds_its_rate_for_each_tick_and_ramps_toward_the_next_row() {
    let s = Schedule { rates: vec![10.0, 20.0], row_seconds: 15 };
    assert_eq!((s.rate_at(0.0), s.rate_at(14.9), s.rate_at(15.0), s.rate_at(30.0)), (10.0, 10.0, 20.0, 0.0));
    let minute = Schedule { rates: vec![10.0, 30.0], row_seconds: 60 };
    assert_eq!((minute.rate_at(10.0), minute.rate_at(20.0), minute.rate_at(59.0)), (10.0, 15.0, 25.0));
}

#[test]
fn the_schedule_sends_exactly_the_integral_of_the_rate_in_time_order() {
    let s = Schedule { rates: vec![10.0, 20.0], row_seconds: 15 };
    let times = s.send_times();
    assert_eq!(times.len(), 450);
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(times.iter().filter(|t| **t < 15.0).count().abs_diff(150), 0);
    assert!(times.last().is_some_and(|t| *t < 30.0));
}

#[test]
fn a_failed_request_counts_as_infinitely_slow_in_its_second() {
    let mut requests: Vec<Sent> = (0..19).map(|i| sent(0.01 * f64::from(i), 20.0, 200)).collect();
    requests.push(Sent { at: 0.5, latency: None, status: None });
    requests.push(sent(1.2, 40.0, 200));
    requests.push(sent(1.3, 10.0, 503));
    let fleet = [FleetSample { at: 0.0, replicas: 2, ready: 1 }, FleetSample { at: 1.4, replicas: 3, ready: 2 }];
    let t = timeline(&requests, &fleet, 3);
    assert_eq!((t[0].offered, t[0].failed, t[0].p95_ms), (20, 1, 20.0), "one in twenty is the 5 % tail");
    assert_eq!(t[0].p99_ms, f64::INFINITY);
    assert_eq!((t[1].offered, t[1].failed, t[1].p95_ms), (2, 1, f64::INFINITY));
    assert_eq!((t[0].replicas, t[0].ready, t[1].replicas, t[1].ready), (2, 1, 3, 2), "sampled mid-second");
    assert_eq!((t[2].offered, t[2].replicas, t[2].ready), (0, 3, 2));
    let model = Model { pod_capacity_rps: 10.0, ..Model::default() };
    let f = figures(&t, &fleet, &model);
    assert_eq!((f.overload_seconds, f.requests, f.failed, f.peak_replicas), (1, 22, 2, 3));
    assert_eq!(f.model_overload_seconds, 1, "20 req/s exceed one pod's 8 within the SLO");
    assert_eq!(f.replica_seconds, 8.0);
}

#[test]
fn start_up_is_timed_from_each_rise_to_that_many_ready_pods_unless_a_scale_down_overtook_it() {
    let at = |at, replicas, ready| FleetSample { at, replicas, ready };
    let fleet = [at(0.0, 1, 1), at(1.0, 3, 1), at(5.0, 3, 2), at(9.0, 3, 3), at(10.0, 4, 3), at(11.0, 2, 2)];
    assert_eq!(startup_delays(&fleet), [8.0]);
    assert_eq!(median(&[8.0, 2.0, 4.0]), Some(4.0));
    assert_eq!(median(&[]), None);
}

#[test]
fn the_slo_utilisation_is_where_the_seconds_stop_meeting_the_slo() {
    let second =
        |offered, p95_ms| Second { second: 0, offered, failed: 0, p95_ms, p99_ms: p95_ms, replicas: 1, ready: 1 };
    let mut t: Vec<Second> = Vec::new();
    t.extend((0..20).map(|_| second(55, 40.0)));
    t.extend((0..20).map(|i| second(85, if i == 0 { 400.0 } else { 90.0 })));
    t.extend((0..20).map(|i| second(95, if i < 5 { 900.0 } else { 100.0 })));
    t.push(Second { failed: 3, ..second(20, f64::INFINITY) });
    let bins = latency_by_utilisation(&t, 100.0, 300.0);
    assert_eq!(bins[5], (0.6, 20, 20));
    assert_eq!(bins[8], (0.9, 20, 19), "one slow second in twenty is within the 95 %");
    assert_eq!(bins[9], (1.0, 20, 15));
    assert_eq!(bins[2].1, 0, "a second with failures is left out");
    assert_eq!(measured_slo_utilisation(&bins, 5), Some(0.9));
    assert_eq!(measured_slo_utilisation(&bins, 50), None);
}
