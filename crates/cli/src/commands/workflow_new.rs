//! `engine workflow new FILE --model PKG --initiator DIR --site DIR...`: a commented FedAvg
//! workflow with every key and its default written out, checked as `engine validate` checks
//! a file before it is written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use fl_workflow::Workflow;
use fl_workflow::template::{self, TemplateInitiator, TemplateOptions, TemplateParticipant};

/// Arguments of `engine workflow new`.
#[derive(Debug, Args)]
pub struct NewWorkflowArgs {
    /// The workflow file to write (refused when it exists, unless --force).
    file: PathBuf,
    /// The model package (a directory or a model.zip).
    #[arg(long)]
    model: PathBuf,
    /// The initiator's dataset directory: its Validation split drives early stopping, its
    /// Test split measures the global model.
    #[arg(long, value_name = "DIR")]
    initiator: PathBuf,
    /// The initiator's node id.
    #[arg(long, default_value = "initiator")]
    initiator_node: String,
    /// A participant's dataset directory, as `NODE=DIR` or `DIR` (the node id is then the
    /// directory's name); repeat for each site.
    #[arg(long = "site", value_name = "[NODE=]DIR", required = true)]
    sites: Vec<String>,
    /// The task's name (default: the file's name without its extension).
    #[arg(long)]
    name: Option<String>,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

/// Runs `engine workflow new`.
pub fn run(args: NewWorkflowArgs) -> Result<ExitCode> {
    if args.file.exists() && !args.force {
        bail!(
            "{}: exists (accepted: a new file, or --force to replace it)",
            args.file.display()
        );
    }
    let dir = match args.file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => args
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("--name is needed: the file has no name to take")?,
    };
    let participants = args
        .sites
        .iter()
        .map(|site| participant(site))
        .collect::<Result<Vec<_>>>()?;
    let text = template::fedavg(&TemplateOptions {
        name,
        model: args.model.clone(),
        initiator: TemplateInitiator {
            node: args.initiator_node.clone(),
            train: None,
            validation: Some(args.initiator.clone()),
            test: args.initiator.clone(),
        },
        participants,
        dir,
    })?;
    // What `engine validate` would say about the file, before it exists.
    if let Err(errors) = Workflow::parse(&text, &args.file) {
        super::validate::print_errors(&args.file, &errors);
        bail!("the workflow was not written: fix the flags above");
    }
    write_atomically(&args.file, &text)?;
    println!("wrote {}", args.file.display());
    println!(
        "  next: engine validate {0}; engine submit {0}",
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn participant(site: &str) -> Result<TemplateParticipant> {
    let (node, dir) = match site.split_once('=') {
        Some((node, dir)) => (node.to_owned(), PathBuf::from(dir)),
        None => {
            let dir = PathBuf::from(site);
            let node = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .with_context(|| {
                    format!("--site {site}: no node id to take (accepted: NODE=DIR or DIR)")
                })?;
            (node, dir)
        }
    };
    Ok(TemplateParticipant { node, data: dir })
}

fn write_atomically(file: &Path, text: &str) -> Result<()> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    fs::write(temp.path(), text).with_context(|| format!("writing {}", file.display()))?;
    temp.persist(file)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}
