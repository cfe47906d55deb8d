//! `Workflow::load` on broken workflows: one broken workflow per problem (each with its exact
//! key and line:column), and all problems of a file together.

mod common;

use common::{BASE, fixture, load, located};

struct Case {
    name: &'static str,
    yaml: String,
    /// The key, line and column of the only problem, and words its message must contain.
    key: &'static str,
    line: u64,
    column: u64,
    message: &'static str,
    /// Words the "accepted" part must contain.
    accepted: &'static str,
}

fn case(
    name: &'static str,
    yaml: impl Into<String>,
    (key, line, column): (&'static str, u64, u64),
    message: &'static str,
    accepted: &'static str,
) -> Case {
    Case {
        name,
        yaml: yaml.into(),
        key,
        line,
        column,
        message,
        accepted,
    }
}

#[test]
fn each_broken_workflow_reports_its_problem_at_the_exact_key_and_position() {
    let cases = [
        case(
            "unknown key with a suggestion",
            format!("{BASE}max_round: 5\n"),
            ("max_round", 13, 1),
            "is not a known key; did you mean `max_rounds`?",
            "max_rounds",
        ),
        case(
            "unknown key in a section",
            format!("{BASE}early_stopping:\n  patiance: 3\n"),
            ("early_stopping.patiance", 14, 3),
            "did you mean `patience`?",
            "enabled, metric, patience",
        ),
        case(
            "a key of another section",
            format!("{BASE}patience: 3\n"),
            ("patience", 13, 1),
            "did you mean `early_stopping.patience`?",
            "max_rounds",
        ),
        case(
            "unknown key in a list item",
            BASE.replace("    data: data/b", "    dta: data/b\n    data: data/b"),
            ("participants[1].dta", 12, 5),
            "did you mean `data`?",
            "node, data",
        ),
        case(
            "string for a number",
            format!("{BASE}max_rounds: many\n"),
            ("max_rounds", 13, 13),
            "is the string `many`",
            "a whole number from 1 to 100000",
        ),
        case(
            "zero rounds",
            format!("{BASE}max_rounds: 0\n"),
            ("max_rounds", 13, 13),
            "is the number `0`",
            "a whole number from 1",
        ),
        case(
            "negative seed",
            format!("{BASE}seed: -1\n"),
            ("seed", 13, 7),
            "is the number `-1`",
            "a whole number from 0",
        ),
        case(
            "list for a mapping",
            format!("{BASE}aggregation: [samples]\n"),
            ("aggregation", 13, 14),
            "is a list",
            "a mapping such as `{weighting: samples}`",
        ),
        case(
            "unknown choice",
            format!("{BASE}aggregation:\n  weighting: mean\n"),
            ("aggregation.weighting", 14, 14),
            "is the string `mean`",
            "`samples` or `uniform`",
        ),
        case(
            "string for a boolean",
            format!("{BASE}early_stopping:\n  enabled: no\n"),
            ("early_stopping.enabled", 14, 12),
            "is the string `no`",
            "true or false",
        ),
        case(
            "duration without a unit",
            format!("{BASE}timeouts:\n  schedule: 30\n"),
            ("timeouts.schedule", 14, 13),
            "`30` has a number without a unit",
            "`500ms`, `30s`, `5m`, `1h`",
        ),
        case(
            "duration with an unknown unit",
            format!("{BASE}timeouts:\n  calculation: 5 min\n"),
            ("timeouts.calculation", 14, 16),
            "unknown unit `min`",
            "or 0 for no limit",
        ),
        case(
            "missing name",
            BASE.replace("name: demo\n", ""),
            ("name", 1, 1),
            "is required but missing",
            "the task's name",
        ),
        case(
            "missing test data",
            BASE.replace("  test: data/hub\n", ""),
            ("initiator.test", 4, 1),
            "is required but missing",
            "the test data",
        ),
        case(
            "missing participant data",
            BASE.replace("    data: data/a\n", ""),
            ("participants[0].data", 9, 5),
            "is required but missing",
            "training data",
        ),
        case(
            "invalid node id",
            BASE.replace("node: b", "node: site two"),
            ("participants[1].node", 11, 11),
            "`site two` is not a valid name",
            "letters, digits",
        ),
        case(
            "duplicate node ids",
            BASE.replace("node: b", "node: a"),
            ("participants[1].node", 11, 11),
            "node id `a` is already used by `participants[0].node`",
            "unique",
        ),
        case(
            "initiator id reused",
            BASE.replace("node: b", "node: hub"),
            ("participants[1].node", 11, 11),
            "already used by `initiator.node`",
            "unique",
        ),
        case(
            "duplicate key",
            format!("{BASE}seed: 1\nseed: 2\n"),
            ("seed", 14, 1),
            "is given more than once (first on line 13)",
            "each key once",
        ),
        case(
            "quorum too high",
            format!("{BASE}quorum: 3\n"),
            ("quorum", 13, 9),
            "is 3, but only 2 nodes train (2 participants)",
            "a whole number from 1 to 2",
        ),
        case(
            "log_rounds above max_rounds",
            format!("{BASE}max_rounds: 5\nlog_rounds: 6\n"),
            ("log_rounds", 14, 13),
            "is 6, more than `max_rounds` (5)",
            "from 1 to 5",
        ),
        case(
            "nobody trains",
            BASE.split("participants:")
                .next()
                .unwrap_or_default()
                .to_owned(),
            ("participants", 1, 1),
            "no node trains",
            "`initiator.train`",
        ),
        case(
            "early stopping without validation data",
            format!(
                "{}early_stopping:\n  patience: 3\n",
                BASE.replace("  validation: data/hub\n", "")
            ),
            ("early_stopping", 12, 1),
            "early stopping needs validation data",
            "`early_stopping.enabled: false`",
        ),
        case(
            "unsupported version",
            // Nothing else is checked against version 1: the typo is not reported.
            format!("{}typo: 1\n", BASE.replace("version: 1", "version: 2")),
            ("version", 1, 10),
            "workflow format version 2 is not supported",
            "version 1",
        ),
        case(
            "version missing",
            BASE.replace("version: 1\n", ""),
            ("version", 1, 1),
            "is required but missing",
            "`version: 1`",
        ),
        case(
            "dataset path that does not exist",
            BASE.replace("data: data/b", "data: data/nope"),
            ("participants[1].data", 12, 11),
            "data/nope does not exist",
            "an existing dataset directory",
        ),
        case(
            "dataset path that is a file",
            BASE.replace("data: data/b", "data: model.zip"),
            ("participants[1].data", 12, 11),
            "model.zip is not a directory",
            "an existing dataset directory",
        ),
        case(
            "model path that does not exist",
            BASE.replace("model: model", "model: models/none"),
            ("model", 3, 8),
            "models/none does not exist",
            "a model package directory, or a model.zip",
        ),
        case(
            "model file that is not a zip",
            BASE.replace("model: model", "model: nats.creds"),
            ("model", 3, 8),
            "is a file but not a .zip",
            "model.zip",
        ),
        case(
            "dataset by name in an embedded run",
            BASE.replace("data: data/a", "data: {name: site-a-train}"),
            ("participants[0].data", 10, 11),
            "dataset `site-a-train` is given by name",
            "`transport: {nats: ...}`",
        ),
        case(
            "misspelt required key: reported once",
            BASE.replace("data: data/a", "data: {nmae: site-a}"),
            ("participants[0].data.nmae", 10, 12),
            "did you mean `name`?",
            "name",
        ),
        case(
            "misspelt required key of a section",
            BASE.replace("  test: data/hub", "  tset: data/hub"),
            ("initiator.tset", 7, 3),
            "did you mean `test`?",
            "node, train, validation, test",
        ),
        case(
            "transport of an unknown kind",
            format!("{BASE}transport: grpc\n"),
            ("transport", 13, 12),
            "is the string `grpc`",
            "`embedded`, or `{nats:",
        ),
        case(
            "NATS URL without a scheme",
            format!("{BASE}transport:\n  nats:\n    url: localhost:4222\n"),
            ("transport.nats.url", 15, 10),
            "`localhost:4222` is not a NATS server URL",
            "nats://127.0.0.1:4222",
        ),
        case(
            "NATS credentials that do not exist",
            format!(
                "{BASE}transport:\n  nats:\n    url: nats://h:4222\n    credentials: no.creds\n"
            ),
            ("transport.nats.credentials", 16, 18),
            "no.creds does not exist",
            "credentials file",
        ),
        case(
            "momentum with Adam",
            format!("{BASE}training:\n  optimizer: adam\n  momentum: 0.9\n"),
            ("training.momentum", 15, 13),
            "momentum applies to SGD only",
            "`optimizer: sgd`",
        ),
        case(
            "epochs under training",
            format!("{BASE}training:\n  epochs: 3\n"),
            ("training.epochs", 14, 3),
            "local epochs per round are the top-level `merge_epochs`",
            "learning_rate",
        ),
        case(
            "learning rate of zero",
            format!("{BASE}training:\n  learning_rate: 0\n"),
            ("training.learning_rate", 14, 18),
            "is the number 0",
            "a number greater than 0",
        ),
        case(
            "output that is a file",
            format!("{BASE}output: model.zip\n"),
            ("output", 13, 9),
            "model.zip exists and is not a directory",
            "a directory",
        ),
        case(
            "too many threads",
            format!("{BASE}threads: 5000\n"),
            ("threads", 13, 10),
            "is the number `5000`",
            "from 1 to 1024",
        ),
        case(
            "the document is a list",
            "- version: 1\n",
            ("", 1, 1),
            "is a list",
            "a mapping of workflow keys",
        ),
        case(
            "empty file",
            "# nothing yet\n",
            ("", 1, 1),
            "is empty",
            "`version: 1`",
        ),
    ];
    let dir = fixture();
    for case in &cases {
        let errors = match load(&dir, &case.yaml) {
            Ok(_) => panic!("{}: expected a problem, the workflow loaded", case.name),
            Err(errors) => errors,
        };
        assert_eq!(
            located(&errors),
            vec![(case.key.to_owned(), case.line, case.column)],
            "{}: {errors}",
            case.name
        );
        let error = &errors.as_slice()[0];
        assert!(
            error.message.contains(case.message),
            "{}: message {:?} lacks {:?}",
            case.name,
            error.message,
            case.message
        );
        let accepted = error.expected.as_deref().unwrap_or_default();
        assert!(
            accepted.contains(case.accepted),
            "{}: accepted {accepted:?} lacks {:?}",
            case.name,
            case.accepted
        );
        // The printed form: file:line:column, the key, the message, what is accepted.
        let printed = error.to_string();
        let file = dir.path().join("task.yaml");
        let prefix = format!("{}:{}:{}: ", file.display(), case.line, case.column);
        assert!(printed.starts_with(&prefix), "{}: {printed}", case.name);
        if !case.key.is_empty() {
            assert!(
                printed.contains(&format!("key `{}`: ", case.key)),
                "{printed}"
            );
        }
    }
}

#[test]
fn every_problem_of_a_file_is_reported_together_in_document_order() {
    let dir = fixture();
    let yaml = "\
version: 1
name: bad name
max_round: 5
model: nowhere
initiator:
  node: a
  test: 12
participants:
  - node: a
    data: data/a
  - node: b
    data: {name: b-train}
timeouts:
  schedule: soon
quorum: 0
";
    let errors = load(&dir, yaml).expect_err("broken");
    assert_eq!(
        located(&errors),
        vec![
            ("name".to_owned(), 2, 7),
            ("max_round".to_owned(), 3, 1),
            ("model".to_owned(), 4, 8),
            ("initiator.test".to_owned(), 7, 9),
            ("participants[0].node".to_owned(), 9, 11),
            ("participants[1].data".to_owned(), 12, 11),
            ("timeouts.schedule".to_owned(), 14, 13),
            ("quorum".to_owned(), 15, 9),
        ],
        "{errors}"
    );
    // The summary names the count and every problem.
    let text = errors.to_string();
    assert!(text.starts_with("the workflow has 8 problems:"), "{text}");
    assert_eq!(text.lines().count(), 9, "{text}");
}
