//! The kubelet's Events, keyed as its event correlator keys them: one Event per object, type,
//! reason and message, a repeat counted in the Event's series. kube-runtime's `Recorder` keys
//! without the message, so `Error: ErrImagePull` would only bump the count of the `Failed to
//! pull image` Event that shares its reason, and the second message would never be seen.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client};
use tokio::sync::Mutex;

use crate::contract::NODE_NAME;

/// How long a repeat still counts in the same Event (kube-runtime's and the correlator's
/// series window are minutes; after it a new Event starts).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    warning: bool,
    reason: String,
    note: String,
}

struct Seen {
    name: String,
    count: i32,
    last: Instant,
}

pub struct Events {
    client: Client,
    seen: Mutex<HashMap<Key, Seen>>,
}

impl Events {
    pub fn new(client: Client) -> Self {
        Self { client, seen: Mutex::new(HashMap::new()) }
    }

    pub async fn publish(
        &self,
        type_: EventType,
        reason: &str,
        note: &str,
        regarding: &ObjectReference,
    ) -> kube::Result<()> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let warning = matches!(type_, EventType::Warning);
        let key = Key {
            uid: regarding.uid.clone().unwrap_or_default(),
            warning,
            reason: reason.to_owned(),
            note: note.to_owned(),
        };
        let now = MicroTime(Timestamp::now());
        // held across the write so that two repeats cannot both create the Event
        let mut seen = self.seen.lock().await;
        seen.retain(|_, s| s.last.elapsed() < SERIES_WINDOW);
        if let Some(s) = seen.get_mut(&key) {
            let series = EventSeries { count: s.count + 1, last_observed_time: now };
            api.patch(&s.name, &PatchParams::default(), &Patch::Merge(serde_json::json!({ "series": series }))).await?;
            s.count += 1;
            s.last = Instant::now();
            return Ok(());
        }
        let object = regarding.name.clone().unwrap_or_default();
        let name = format!("{object}.{:x}", now.0.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace), ..Default::default() },
            action: Some(reason.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note.to_owned()),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            event_time: Some(now),
            regarding: Some(regarding.clone()),
            reporting_controller: Some("kubelet".to_owned()),
            reporting_instance: Some(NODE_NAME.to_owned()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        seen.insert(key, Seen { name, count: 1, last: Instant::now() });
        Ok(())
    }
}
