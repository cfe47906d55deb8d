//! Reading a workflow file: YAML into a tree of located nodes, the command line's overrides
//! written into it, then every key checked against the version 1 format, then the checks
//! across keys and against the file system. Every problem is collected; a workflow is
//! returned only when there is none.
//!
//! The checks themselves live in `crate::check`.

use std::path::Path;

use crate::check::Checker;
use crate::error::{Position, WorkflowError, WorkflowErrors};
use crate::overrides::{Overrides, apply};
use crate::paths;
use crate::workflow::Workflow;
use crate::yaml;

/// Workflow files larger than this are refused before being read whole.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

impl Workflow {
    /// Reads and checks the workflow file at `path`, returning every problem at once.
    ///
    /// Relative paths in the file resolve against the file's directory. Paths are checked
    /// as far as the file system goes (existence and kind); packages and datasets are not
    /// opened.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, WorkflowErrors> {
        Self::load_with(path, &Overrides::new())
    }

    /// Like [`Workflow::load`], with `overrides` (`--set KEY=VALUE`, `--output DIR`) written
    /// into the document before it is checked: they are checked like the file's own text, and
    /// a problem they cause names them. The applied overrides are in
    /// [`Workflow::overrides`].
    pub fn load_with(
        path: impl AsRef<Path>,
        overrides: &Overrides,
    ) -> Result<Self, WorkflowErrors> {
        let path = path.as_ref();
        let fail = |message: String, expected: Option<&str>, position: Option<Position>| {
            WorkflowErrors::new(vec![WorkflowError {
                file: path.display().to_string(),
                origin: None,
                position,
                key: None,
                message,
                expected: expected.map(str::to_owned),
            }])
        };
        let metadata = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read the workflow file: {e}"), None, None))?;
        if metadata.is_dir() {
            return Err(fail(
                "is a directory".to_owned(),
                Some("a workflow YAML file, such as workflows/fedavg.yaml"),
                None,
            ));
        }
        if metadata.len() > MAX_FILE_BYTES {
            return Err(fail(
                format!("is {} bytes, too large for a workflow", metadata.len()),
                Some("a YAML file of at most 1 MiB"),
                None,
            ));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| fail(format!("cannot read the workflow file: {e}"), None, None))?;
        match String::from_utf8(bytes) {
            Ok(text) => Self::parse_with(&text, path, overrides),
            Err(error) => {
                // The position of the first byte that is not UTF-8.
                let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
                let before = String::from_utf8_lossy(valid);
                let line = before.matches('\n').count() as u64 + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
                Err(fail(
                    "is not UTF-8 text".to_owned(),
                    Some("a UTF-8 YAML file"),
                    Some(Position { line, column }),
                ))
            }
        }
    }

    /// Checks the workflow `text`, read from `path`: problems name `path`, and relative
    /// paths in the text resolve against its directory (the file itself is not read).
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self, WorkflowErrors> {
        Self::parse_checked(text, path.as_ref(), true, &Overrides::new())
    }

    /// Like [`Workflow::parse`], with `overrides` applied as [`Workflow::load_with`] does.
    pub fn parse_with(
        text: &str,
        path: impl AsRef<Path>,
        overrides: &Overrides,
    ) -> Result<Self, WorkflowErrors> {
        Self::parse_checked(text, path.as_ref(), true, overrides)
    }

    /// Like [`Workflow::parse`] for a workflow submitted from another machine (to
    /// `engine coordinator`): every key is checked as usual, but paths are not looked up on
    /// this machine's file system, because they name files on the submitter's machine (the
    /// model, the output, credentials) or on the agents' (datasets).
    pub fn parse_submitted(text: &str, path: impl AsRef<Path>) -> Result<Self, WorkflowErrors> {
        Self::parse_checked(text, path.as_ref(), false, &Overrides::new())
    }

    /// Like [`Workflow::parse_submitted`], with the submitter's `overrides` applied as
    /// [`Workflow::load_with`] does (an `--output` resolves against this process's current
    /// directory).
    pub fn parse_submitted_with(
        text: &str,
        path: impl AsRef<Path>,
        overrides: &Overrides,
    ) -> Result<Self, WorkflowErrors> {
        Self::parse_checked(text, path.as_ref(), false, overrides)
    }

    fn parse_checked(
        text: &str,
        path: &Path,
        local_files: bool,
        overrides: &Overrides,
    ) -> Result<Self, WorkflowErrors> {
        let mut checker = Checker {
            local_files,
            file: path.display().to_string(),
            base: paths::base_dir(path),
            errors: Vec::new(),
            nodes: Vec::new(),
            initiator_trains: None,
            participant_count: None,
            origins: Vec::new(),
        };
        let mut applied = Vec::new();
        let workflow = match yaml::parse(text.strip_prefix('\u{feff}').unwrap_or(text)) {
            Ok(mut root) => {
                let result = apply::apply(&mut root, overrides);
                checker.origins = result.origins;
                for problem in result.problems {
                    checker.error(
                        problem.at,
                        &problem.key,
                        problem.message,
                        Some(problem.expected),
                    );
                }
                applied = result.texts;
                checker.workflow(&root)
            }
            Err(error) => {
                checker.errors.push(WorkflowError {
                    file: checker.file.clone(),
                    origin: None,
                    position: Some(error.at.unwrap_or(Position { line: 1, column: 1 })),
                    key: None,
                    message: format!("is not valid YAML: {}", error.message),
                    expected: None,
                });
                None
            }
        };
        match workflow {
            Some(workflow) if checker.errors.is_empty() => Ok(Self {
                overrides: applied,
                ..workflow
            }),
            Some(_) => Err(WorkflowErrors::new(checker.errors)),
            None if checker.errors.is_empty() => {
                // Every path that gives up reports why; this is a safety net, not a message
                // users should see.
                checker.error(
                    Position { line: 1, column: 1 },
                    "",
                    "could not be read as a workflow",
                    None,
                );
                Err(WorkflowErrors::new(checker.errors))
            }
            None => Err(WorkflowErrors::new(checker.errors)),
        }
    }
}
