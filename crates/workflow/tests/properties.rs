//! Properties over large input spaces: no text makes the parser panic or lose positions, and
//! every timeout prints in a form that parses back to itself.

use std::path::Path;

use fl_workflow::{Timeout, Workflow};
use proptest::prelude::*;

/// Fragments of workflow files, so that generated texts get past the YAML syntax often.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("version: 1\n".to_owned()),
        Just("name: t\n".to_owned()),
        Just("model: .\n".to_owned()),
        Just("initiator:\n  node: a\n  test: .\n".to_owned()),
        Just("participants:\n  - node: b\n    data: .\n".to_owned()),
        Just("timeouts: {schedule: 1s}\n".to_owned()),
        Just("quorum: 2\n".to_owned()),
        Just("transport: {nats: {url: nats://h:1}}\n".to_owned()),
        "[a-z_]{1,12}: [ -~]{0,12}\n",
        "[ -~\n\t]{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_gives_a_workflow_or_located_problems(parts in prop::collection::vec(fragment(), 0..8)) {
        let text = parts.concat();
        if let Err(errors) = Workflow::parse(&text, Path::new("/nonexistent/w.yaml")) {
            prop_assert!(!errors.is_empty());
            prop_assert!(errors.iter().all(|e| e.position.is_some()), "{}", errors);
        }
    }

    #[test]
    fn timeouts_print_in_a_form_that_parses_back(millis in any::<u64>()) {
        let timeout = Timeout::from_millis(millis);
        prop_assert_eq!(timeout.to_string().parse::<Timeout>(), Ok(timeout));
    }
}
