//! The keys the parser accepts, section by section, and suggestions for keys it does not.
//!
//! These tables drive the unknown-key check; a test checks that the JSON Schema lists
//! exactly the same keys, so the schema and the parser cannot drift apart.

/// One mapping of the workflow and its keys.
#[derive(Debug)]
pub(crate) struct Section {
    /// Key path of the mapping with `[]` for list items (`participants[]`); empty for the top.
    pub path: &'static str,
    pub keys: &'static [&'static str],
}

pub(crate) const ROOT: Section = Section {
    path: "",
    keys: &[
        "version",
        "name",
        "seed",
        "model",
        "initiator",
        "participants",
        "max_rounds",
        "merge_epochs",
        "log_rounds",
        "aggregation",
        "early_stopping",
        "timeouts",
        "quorum",
        "round_retries",
        "training",
        "threads",
        "output",
        "transport",
    ],
};
pub(crate) const INITIATOR: Section = Section {
    path: "initiator",
    keys: &["node", "train", "validation", "test"],
};
pub(crate) const PARTICIPANT: Section = Section {
    path: "participants[]",
    keys: &["node", "data"],
};
pub(crate) const AGGREGATION: Section = Section {
    path: "aggregation",
    keys: &["weighting"],
};
pub(crate) const EARLY_STOPPING: Section = Section {
    path: "early_stopping",
    keys: &["enabled", "metric", "patience"],
};
pub(crate) const TIMEOUTS: Section = Section {
    path: "timeouts",
    keys: &["schedule", "calculation"],
};
pub(crate) const TRAINING: Section = Section {
    path: "training",
    // The hyper-parameters a workflow may set (`fl_package::HYPER_PARAMETERS`, a test keeps
    // them equal).
    keys: &[
        "optimizer",
        "learning_rate",
        "lr_schedule",
        "momentum",
        "weight_decay",
        "batch_size",
        "drop_last",
        "head",
    ],
};
/// The keys of a learning-rate schedule mapping, which `fl_package` checks (the JSON Schema
/// test keeps them equal to its schema).
pub(crate) const LR_SCHEDULE: Section = Section {
    path: "training.lr_schedule",
    keys: &["kind", "step_size", "gamma", "t_max", "eta_min"],
};
pub(crate) const TRANSPORT: Section = Section {
    path: "transport",
    keys: &["nats"],
};
pub(crate) const NATS: Section = Section {
    path: "transport.nats",
    keys: &["url", "credentials"],
};
/// A dataset given by name; it appears under every dataset key (see [`DATASET_KEYS`]).
pub(crate) const NAMED_DATASET: Section = Section {
    path: "<dataset>",
    keys: &["name"],
};

/// The keys whose value is a dataset.
pub(crate) const DATASET_KEYS: &[&str] = &[
    "initiator.train",
    "initiator.validation",
    "initiator.test",
    "participants[].data",
];

const SECTIONS: &[&Section] = &[
    &ROOT,
    &INITIATOR,
    &PARTICIPANT,
    &AGGREGATION,
    &EARLY_STOPPING,
    &TIMEOUTS,
    &TRAINING,
    &LR_SCHEDULE,
    &TRANSPORT,
    &NATS,
];

/// Keys of other tools or habits, with where their meaning lives in a workflow.
const HINTS: &[(&str, &str, &str)] = &[
    // (section path, key, hint)
    (
        "",
        "epochs",
        "FedAvg runs `merge_epochs` local epochs per round for at most `max_rounds` rounds",
    ),
    (
        "training",
        "epochs",
        "local epochs per round are the top-level `merge_epochs`",
    ),
    ("training", "lr_step_size", fl_package::RETIRED_KEYS[0].1),
    ("training", "lr_gamma", fl_package::RETIRED_KEYS[1].1),
    ("", "rounds", "did you mean `max_rounds`?"),
    (
        "",
        "calculation_timeout",
        "did you mean `timeouts.calculation`?",
    ),
    ("", "schedule_timeout", "did you mean `timeouts.schedule`?"),
    ("", "collaborators", "did you mean `participants`?"),
    ("", "aggregator", "did you mean `initiator`?"),
    (
        "initiator",
        "data",
        "the initiator's datasets are `train`, `validation` and `test`",
    ),
    (
        "<dataset>",
        "path",
        "a dataset directory is written as a plain string, such as `data: ../datasets/site-1`",
    ),
];

/// Every key path the parser accepts (`initiator.node`, `participants[].data`,
/// `initiator.test.name`, ...), sorted.
pub fn accepted_keys() -> Vec<String> {
    let mut keys: Vec<String> = SECTIONS
        .iter()
        .flat_map(|section| section.keys.iter().map(|key| join(section.path, key)))
        .collect();
    for dataset in DATASET_KEYS {
        for key in NAMED_DATASET.keys {
            keys.push(join(dataset, key));
        }
    }
    keys.sort();
    keys
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// What to tell a user who wrote `key` in `section`: the closest known key of the section,
/// else where a key of that name belongs, else a hint for keys of other tools.
pub(crate) fn suggestion(section: &Section, key: &str) -> Option<String> {
    if let Some(known) = closest(section, key) {
        return Some(format!("did you mean `{known}`?"));
    }
    let wanted = normalise(key);
    if let Some((_, _, hint)) = HINTS
        .iter()
        .find(|(path, name, _)| *path == section.path && *name == wanted)
    {
        return Some((*hint).to_owned());
    }
    SECTIONS
        .iter()
        .filter(|other| other.path != section.path && !other.path.ends_with("[]"))
        .find(|other| other.keys.contains(&wanted.as_str()))
        .map(|other| format!("did you mean `{}`?", join(other.path, &wanted)))
}

/// The key of `section` that `key` is most likely a misspelling of.
pub(crate) fn closest(section: &Section, key: &str) -> Option<&'static str> {
    let wanted = normalise(key);
    section
        .keys
        .iter()
        .map(|known| (distance(&wanted, &normalise(known)), *known))
        .filter(|(d, known)| *d <= tolerance(known))
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

/// Keys compare without regard to case and to `-` versus `_`.
fn normalise(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace(['-', ' '], "_")
}

/// How many edits a misspelling of `known` may have: 1 for short keys, up to 3.
fn tolerance(known: &str) -> usize {
    (known.len() / 4).clamp(1, 3)
}

/// Edit distance with adjacent transpositions counting as one edit (optimal string
/// alignment), over characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_key_of_the_section() {
        let s = |section: &Section, key: &str| suggestion(section, key);
        assert_eq!(
            s(&ROOT, "max_round"),
            Some("did you mean `max_rounds`?".into())
        );
        assert_eq!(
            s(&ROOT, "max-rounds"),
            Some("did you mean `max_rounds`?".into())
        );
        assert_eq!(
            s(&ROOT, "Max_Rounds"),
            Some("did you mean `max_rounds`?".into())
        );
        assert_eq!(
            s(&ROOT, "merge_epoch"),
            Some("did you mean `merge_epochs`?".into())
        );
        assert_eq!(
            s(&ROOT, "partcipants"),
            Some("did you mean `participants`?".into())
        );
        assert_eq!(
            s(&AGGREGATION, "wieghting"),
            Some("did you mean `weighting`?".into())
        );
        assert_eq!(s(&PARTICIPANT, "dat"), Some("did you mean `data`?".into()));
        assert_eq!(s(&ROOT, "zzz"), None);
        assert!(
            s(&NAMED_DATASET, "path").is_some_and(|h| h.contains("plain string")),
            "{:?}",
            s(&NAMED_DATASET, "path")
        );
        // A key of another section says where it belongs.
        assert_eq!(
            s(&ROOT, "patience"),
            Some("did you mean `early_stopping.patience`?".into())
        );
        assert_eq!(
            s(&ROOT, "calculation_timeout"),
            Some("did you mean `timeouts.calculation`?".into())
        );
        assert!(
            s(&TRAINING, "epochs").is_some_and(|h| h.contains("merge_epochs")),
            "{:?}",
            s(&TRAINING, "epochs")
        );
    }

    #[test]
    fn the_training_keys_are_the_spec_s_workflow_keys() {
        let spec: Vec<&str> = fl_package::HYPER_PARAMETERS
            .iter()
            .filter(|k| k.scope == fl_package::Scope::Anywhere)
            .map(|k| k.key)
            .collect();
        assert_eq!(TRAINING.keys, spec.as_slice());
        let hint = suggestion(&TRAINING, "lr_step_size");
        assert!(
            hint.as_deref().is_some_and(|h| h.contains("lr_schedule")),
            "{hint:?}"
        );
    }

    #[test]
    fn distance_counts_edits_and_transpositions() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", "abc"), 0);
        assert_eq!(distance("abc", "acb"), 1);
        assert_eq!(distance("abc", "ab"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn accepted_keys_cover_every_section_and_dataset_names() {
        let keys = accepted_keys();
        for key in [
            "version",
            "initiator.test",
            "participants[].data",
            "transport.nats.credentials",
            "initiator.test.name",
            "participants[].data.name",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
    }
}
