//! How far a video stream's labelling has come: webhook consumers write labels back onto
//! fragments (write_back.rs) before they commit their position, so a fragment before every
//! such consumer's position has all the labels it will get. Analytics' video input waits on it.

use std::collections::BTreeMap;

use super::spec::{ConsumerSpec, Sink};
use super::state;

/// The first fragment some running webhook consumer of the stream has not finished with (its
/// labels may still come); `None` when no consumer labels this stream.
pub fn labelled_before(settings: &BTreeMap<String, String>) -> Option<u64> {
    state::specs_of::<ConsumerSpec>(settings)
        .into_iter()
        .filter(|spec| spec.sink == Sink::Frames && !spec.paused)
        // The checkpoint names the next fragment to look at: those before it are finished (one
        // whose frames are partly delivered is that next one). A consumer not yet started has
        // finished none.
        .map(|spec| state::checkpoint(settings, &spec.name).seq.unwrap_or(0))
        .min()
}

/// The settings a consumer defined by `request` (a CreateConsumer body) keeps, with its
/// checkpoint at `seq`: for tests of code that reads them.
#[cfg(test)]
pub fn test_settings(request: &serde_json::Value, seq: Option<u64>) -> Vec<(String, String)> {
    let document = crate::document::Document::parse(request.clone()).expect("document");
    let policy = super::DestinationPolicy { allow_private: true, ..Default::default() };
    let spec = super::spec::parse(&document, 0, &policy).expect("consumer");
    let checkpoint = state::Checkpoint { seq, ..Default::default() };
    vec![
        (state::spec_key(&spec.name), serde_json::to_string(&spec).expect("spec")),
        (state::checkpoint_key(&spec.name), serde_json::to_string(&checkpoint).expect("checkpoint")),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn webhook(name: &str) -> serde_json::Value {
        json!({"ConsumerName": name, "Webhook": {"Url": "http://127.0.0.1:9/labels"}})
    }

    #[test]
    fn the_slowest_running_webhook_consumer_sets_the_mark() {
        let mut settings: BTreeMap<String, String> = BTreeMap::new();
        assert_eq!(labelled_before(&settings), None, "nothing labels this stream");
        settings.extend(test_settings(&webhook("fast"), Some(9)));
        settings.extend(test_settings(&webhook("slow"), Some(4)));
        assert_eq!(labelled_before(&settings), Some(4));
        settings.extend(test_settings(&webhook("new"), None));
        assert_eq!(labelled_before(&settings), Some(0), "a consumer not started has labelled nothing");
    }

    #[test]
    fn a_paused_consumer_holds_nothing_back() {
        let mut settings: BTreeMap<String, String> = test_settings(&webhook("paused"), Some(2)).into_iter().collect();
        let key = state::spec_key("paused");
        let mut spec: ConsumerSpec = serde_json::from_str(&settings[&key]).expect("spec");
        spec.paused = true;
        settings.insert(key, serde_json::to_string(&spec).expect("spec"));
        assert_eq!(labelled_before(&settings), None);
    }
}
