//! The event fixtures are shaped as AWS sends them: the EventBridge envelope's fields, each
//! detail's fields as AWS documents them, and read by the function as their kind.

use deploy_rollback::{read_event, Trigger};

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn every_fixture_has_the_eventbridge_envelope_and_the_documented_detail() {
    for (name, detail_keys) in [
        (
            "codepipeline-action-failed.json",
            &["pipeline", "execution-id", "stage", "action", "state", "region", "type", "version", "execution-result"]
                [..],
        ),
        ("cloudwatch-alarm-state-change.json", &["alarmName", "configuration", "previousState", "state"][..]),
        ("ecs-deployment-failed.json", &["eventType", "eventName", "deploymentId", "updatedAt", "reason"][..]),
    ] {
        let e = fixture(name);
        for key in ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"] {
            assert!(e.get(key).is_some(), "{name} lacks {key}");
        }
        for key in detail_keys {
            assert!(e["detail"].get(key).is_some(), "{name}'s detail lacks {key}");
        }
        let t = read_event(&e, "us-east-1", "r").unwrap();
        assert!(!matches!(t, Trigger::Ignored(_)), "{name} is read as {t:?}");
    }
}
