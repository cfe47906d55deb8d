//! Matching a task's labels to a package's classifier head by name.
//!
//! A package's `id2label` is the truth for its head: output `i` means `id2label[i]`. A task's
//! labels (those of its data) may name the same classes in another order, fewer of them, or
//! new ones; [`plan_labels`] decides, by the declared [`HeadRule`], which labels the model
//! predicts and in which order, so that a sample is always trained and scored against the
//! output of its own label, never by position. The plan is a pure function of the package's
//! labels, the task's and the rule, and applying it to its own result gives the same plan, so
//! every node of a federation (each handed the coordinator's planned labels) builds the same
//! head.

use std::collections::HashSet;
use std::fmt;

use crate::hparams::HeadRule;

/// What happens to the package's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadPlan {
    /// Every output is kept with its meaning; the task's labels are the package's.
    Keep {
        /// The task's data lists the same names in another order (its samples are mapped
        /// to the package's outputs by name).
        reordered: bool,
        /// The package's labels the task's data does not use (their outputs are kept).
        unused: Vec<String>,
    },
    /// The package has no `id2label`: its outputs, as many as the task's labels, are taken
    /// to mean the task's labels in order.
    ByPosition,
    /// A new head for the task's labels.
    Reset {
        /// Outputs of the package's head (0 when unknown).
        from: usize,
    },
    /// The package's outputs are kept, and one new output per label it lacks.
    Extend {
        /// The new labels, after the package's.
        added: Vec<String>,
    },
}

/// The labels a model predicts for a task, by output index, and what that does to the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelPlan {
    /// The model's labels by output index.
    pub labels: Vec<String>,
    /// What happens to the package's head.
    pub head: HeadPlan,
}

/// Why the task's labels cannot meet the package's head under the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// `head: keep`, and the task has labels the package does not know.
    #[error(
        "the data has labels that are not in the package's id2label: {} (id2label: {}); with \
         `head: keep` every label must be one of the package's. Set `head: extend` to add an output for each new \
         label, or `head: reset` for a new head (a workflow's `training.head`, `config.json` or \
         `engine finetune --head`)",
        quoted(.unknown), .known.join(", ")
    )]
    Unknown {
        /// The task's labels missing from `id2label`.
        unknown: Vec<String>,
        /// The package's labels.
        known: Vec<String>,
    },
    /// The package has no `id2label` and the task's labels are not as many as its outputs.
    #[error(
        "the package has no id2label and its head has {outputs} outputs, but the data has {labels} \
         labels; add id2label to config.json, or set `head: reset` for a new head"
    )]
    Unnamed {
        /// The head's outputs.
        outputs: usize,
        /// The task's labels.
        labels: usize,
    },
    /// The task names a label twice.
    #[error("the data names the label `{0}` twice")]
    Duplicate(String),
}

fn quoted(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!("`{l}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Plans the model's labels for a task: `package` is the package's `id2label` in output order
/// (`None` without one), `outputs` its head's width when known, `task` the task's labels.
pub fn plan_labels(
    package: Option<&[String]>,
    outputs: Option<usize>,
    task: &[String],
    rule: HeadRule,
) -> Result<LabelPlan, LabelError> {
    let mut seen = HashSet::new();
    if let Some(twice) = task.iter().find(|l| !seen.insert(l.as_str())) {
        return Err(LabelError::Duplicate(twice.clone()));
    }
    let Some(known) = package else {
        return match rule {
            HeadRule::Reset => Ok(LabelPlan {
                labels: task.to_vec(),
                head: HeadPlan::Reset {
                    from: outputs.unwrap_or(0),
                },
            }),
            _ if outputs.is_none_or(|n| n == task.len()) => Ok(LabelPlan {
                labels: task.to_vec(),
                head: HeadPlan::ByPosition,
            }),
            _ => Err(LabelError::Unnamed {
                outputs: outputs.unwrap_or(0),
                labels: task.len(),
            }),
        };
    };
    let known_set: HashSet<&str> = known.iter().map(String::as_str).collect();
    let unknown: Vec<String> = task
        .iter()
        .filter(|l| !known_set.contains(l.as_str()))
        .cloned()
        .collect();
    match rule {
        HeadRule::Reset => Ok(LabelPlan {
            labels: task.to_vec(),
            head: HeadPlan::Reset {
                from: outputs.unwrap_or(known.len()),
            },
        }),
        HeadRule::Keep if !unknown.is_empty() => Err(LabelError::Unknown {
            unknown,
            known: known.to_vec(),
        }),
        HeadRule::Extend if !unknown.is_empty() => {
            let mut labels = known.to_vec();
            labels.extend(unknown.iter().cloned());
            Ok(LabelPlan {
                labels,
                head: HeadPlan::Extend { added: unknown },
            })
        }
        HeadRule::Keep | HeadRule::Extend => {
            let used: HashSet<&str> = task.iter().map(String::as_str).collect();
            let in_order: Vec<&String> =
                known.iter().filter(|l| used.contains(l.as_str())).collect();
            Ok(LabelPlan {
                labels: known.to_vec(),
                head: HeadPlan::Keep {
                    reordered: in_order.iter().zip(task).any(|(a, b)| *a != b),
                    unused: known
                        .iter()
                        .filter(|l| !used.contains(l.as_str()))
                        .cloned()
                        .collect(),
                },
            })
        }
    }
}

impl fmt::Display for LabelPlan {
    /// The line a run logs at its start.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.head {
            HeadPlan::Keep { reordered, unused } => {
                write!(f, "labels matched by name: the package's head is kept")?;
                if *reordered {
                    write!(
                        f,
                        "; the data lists its labels in another order, mapped by name"
                    )?;
                }
                if !unused.is_empty() {
                    write!(f, "; no data for {}", quoted(unused))?;
                }
                Ok(())
            }
            HeadPlan::ByPosition => write!(
                f,
                "the package has no id2label: its {} outputs are taken as the data's labels in \
                 order ({})",
                self.labels.len(),
                self.labels.join(", ")
            ),
            HeadPlan::Reset { from } => write!(
                f,
                "head: reset: a new classifier head for the data's {} labels (the package's had \
                 {from} outputs)",
                self.labels.len()
            ),
            HeadPlan::Extend { added } => write!(
                f,
                "head: extend: the package's outputs kept, {} new: {}",
                added.len(),
                quoted(added)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_same_names_in_another_order_keep_the_packages_order() {
        let package = labels(&["cat", "dog", "fox"]);
        let plan = plan_labels(
            Some(&package),
            Some(3),
            &labels(&["fox", "cat", "dog"]),
            HeadRule::Keep,
        )
        .expect("planned");
        assert_eq!(plan.labels, package);
        assert_eq!(
            plan.head,
            HeadPlan::Keep {
                reordered: true,
                unused: vec![]
            }
        );
        // Idempotent: planning again from the planned labels gives the same labels.
        let again =
            plan_labels(Some(&package), Some(3), &plan.labels, HeadRule::Keep).expect("planned");
        assert_eq!(again.labels, plan.labels);
        assert_eq!(
            again.head,
            HeadPlan::Keep {
                reordered: false,
                unused: vec![]
            }
        );
        // Fewer labels: the head keeps every output.
        let fewer =
            plan_labels(Some(&package), None, &labels(&["dog"]), HeadRule::Keep).expect("planned");
        assert_eq!(fewer.labels, package);
        assert!(
            fewer.to_string().contains("no data for `cat`, `fox`"),
            "{fewer}"
        );
    }

    #[test]
    fn new_names_follow_the_rule() {
        let package = labels(&["cat", "dog"]);
        let task = labels(&["dog", "owl", "cat", "bat"]);
        let error =
            plan_labels(Some(&package), Some(2), &task, HeadRule::Keep).expect_err("refused");
        let text = error.to_string();
        assert!(
            text.contains("not in the package's id2label: `owl`, `bat` (id2label: cat, dog)"),
            "{text}"
        );
        assert!(
            text.contains("head: extend") && text.contains("head: reset"),
            "{text}"
        );

        let extended =
            plan_labels(Some(&package), Some(2), &task, HeadRule::Extend).expect("planned");
        assert_eq!(extended.labels, labels(&["cat", "dog", "owl", "bat"]));
        assert_eq!(
            extended.head,
            HeadPlan::Extend {
                added: labels(&["owl", "bat"])
            }
        );
        let again = plan_labels(Some(&package), Some(2), &extended.labels, HeadRule::Extend)
            .expect("planned");
        assert_eq!(again.labels, extended.labels);

        let reset = plan_labels(Some(&package), Some(2), &task, HeadRule::Reset).expect("planned");
        assert_eq!(reset.labels, task);
        assert_eq!(reset.head, HeadPlan::Reset { from: 2 });
    }

    #[test]
    fn without_id2label_only_the_count_can_be_checked() {
        let task = labels(&["a", "b"]);
        let plan = plan_labels(None, Some(2), &task, HeadRule::Keep).expect("planned");
        assert_eq!(plan.head, HeadPlan::ByPosition);
        let error = plan_labels(None, Some(3), &task, HeadRule::Keep).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("its head has 3 outputs, but the data has 2"),
            "{error}"
        );
        assert_eq!(
            plan_labels(Some(&task), None, &labels(&["a", "a"]), HeadRule::Keep),
            Err(LabelError::Duplicate("a".into()))
        );
    }
}
