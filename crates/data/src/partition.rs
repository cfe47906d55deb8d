//! Splitting one dataset into per-site datasets for federated simulation: IID, label-skewed
//! (Dirichlet, as Flower Datasets' `DirichletPartitioner`) or one site per label group,
//! optionally holding Validation and Test out for the initiator.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use crate::dataset::{Dataset, OpenOptions, Sample};
use crate::deal::{Assignment, assign};
use crate::error::DataError;
use crate::partition_report::{PartitionReport, SiteShare};
use crate::report::Split;
use crate::write::{
    AnnotatedImage, IoAt, OutputProblem, Staging, check_fresh_output, place_file, write_annotation,
};

/// The name of the initiator's directory when Validation and Test are held out.
pub const INITIATOR: &str = "initiator";

/// How many Dirichlet draws are tried before giving up on `min_per_site` (as Flower
/// Datasets does).
pub const MAX_DIRICHLET_ATTEMPTS: u64 = 10;

/// The `source` of every tag a partition writes.
const TAG_SOURCE: &str = "partition";

/// How samples are dealt to sites.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PartitionScheme {
    /// Shuffled and dealt evenly: every site gets about the same number of samples and the
    /// same label mix.
    Iid,
    /// Label skew: for each label, proportions over the sites are drawn from a symmetric
    /// Dirichlet distribution and the label's samples are cut by them. Small `alpha` (0.1)
    /// gives each site few labels; large `alpha` (100) is close to IID.
    Dirichlet {
        /// The concentration; finite and greater than 0.
        alpha: f64,
    },
    /// Each label goes wholly to one site, dealt in label order: site k (from 0) gets
    /// labels k, k + N, k + 2N, ...
    ByLabel,
}

impl PartitionScheme {
    /// The Dirichlet concentration used when none is given.
    pub const DEFAULT_ALPHA: f64 = 0.5;

    /// Returns the scheme called `name` (`iid`, `dirichlet` or `by-label`), with `alpha`
    /// for `dirichlet` ([`Self::DEFAULT_ALPHA`] when `None`).
    pub fn from_name(name: &str, alpha: Option<f64>) -> Result<Self, PartitionError> {
        let scheme = match name.trim().to_ascii_lowercase().as_str() {
            "iid" => Self::Iid,
            "dirichlet" => Self::Dirichlet {
                alpha: alpha.unwrap_or(Self::DEFAULT_ALPHA),
            },
            "by-label" | "bylabel" | "by_label" => Self::ByLabel,
            _ => {
                return Err(PartitionError::UnknownScheme {
                    name: name.to_owned(),
                });
            }
        };
        if alpha.is_some() && !matches!(scheme, Self::Dirichlet { .. }) {
            return Err(PartitionError::AlphaWithoutDirichlet {
                scheme: scheme.to_string(),
            });
        }
        Ok(scheme)
    }
}

impl fmt::Display for PartitionScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Iid => f.write_str("iid"),
            Self::Dirichlet { alpha } => write!(f, "dirichlet, alpha {alpha}"),
            Self::ByLabel => f.write_str("by-label"),
        }
    }
}

/// How [`partition_dataset`] splits and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionOptions {
    /// How many sites (`site-1` ... `site-N`); at least 1.
    pub sites: usize,
    /// How samples are dealt.
    pub scheme: PartitionScheme,
    /// The seed: the same seed and dataset give the same partition.
    pub seed: u64,
    /// Gives sites only Train samples and all of Validation and Test to `initiator`,
    /// instead of partitioning every split the same way.
    pub holdout: bool,
    /// Hard-links images instead of copying them where the file system allows it.
    pub link: bool,
    /// The fewest Train samples a site may get.
    pub min_per_site: usize,
}

impl PartitionOptions {
    /// Returns options for `sites` sites: IID, seed 0, no holdout, copies, at least one
    /// Train sample per site.
    pub fn new(sites: usize) -> Self {
        Self {
            sites,
            scheme: PartitionScheme::Iid,
            seed: 0,
            holdout: false,
            link: false,
            min_per_site: 1,
        }
    }
}

/// Why a partition could not be made. Nothing is written when it fails.
#[derive(Debug, Error)]
pub enum PartitionError {
    /// No sites were asked for.
    #[error("--sites 0: expected at least 1 site")]
    NoSites,
    /// The Dirichlet concentration is not a positive finite number.
    #[error(
        "--alpha {alpha}: expected a finite number greater than 0, such as 0.5 (smaller skews labels more)"
    )]
    InvalidAlpha {
        /// The value given.
        alpha: f64,
    },
    /// The scheme name is not known.
    #[error("--scheme `{name}` is not a partition scheme; expected iid, dirichlet or by-label")]
    UnknownScheme {
        /// The name given.
        name: String,
    },
    /// A concentration was given for a scheme that has none.
    #[error("--alpha only applies to --scheme dirichlet, not {scheme}")]
    AlphaWithoutDirichlet {
        /// The scheme given.
        scheme: String,
    },
    /// The source dataset cannot be opened.
    #[error("cannot read dataset {}: {source}", dir.display())]
    Dataset {
        /// The dataset directory.
        dir: PathBuf,
        /// Why.
        source: Box<DataError>,
    },
    /// The source dataset has no usable Train sample.
    #[error("dataset {} has no usable Train sample to partition", dir.display())]
    NoTrainSamples {
        /// The dataset directory.
        dir: PathBuf,
    },
    /// More sites than the Train samples allow.
    #[error("--sites {sites} is too many for the {train} Train samples of {} ({min_per_site} or more per site); expected --sites from 1 to {max}", dir.display())]
    TooManySites {
        /// The dataset directory.
        dir: PathBuf,
        /// The number of sites asked for.
        sites: usize,
        /// Usable Train samples.
        train: usize,
        /// The fewest Train samples per site.
        min_per_site: usize,
        /// The most sites accepted.
        max: usize,
    },
    /// `by-label` with fewer labels than sites.
    #[error("--scheme by-label gives each site whole labels but {} has {labels} labels for --sites {sites}; expected --sites from 1 to {labels}", dir.display())]
    FewerLabelsThanSites {
        /// The dataset directory.
        dir: PathBuf,
        /// Its labels.
        labels: usize,
        /// The number of sites asked for.
        sites: usize,
    },
    /// A site would get too few Train samples.
    #[error(
        "{site} would get {count} Train samples with --scheme {scheme}, fewer than the {min_per_site} required; expected fewer --sites or another --scheme"
    )]
    SiteTooSmall {
        /// The site.
        site: String,
        /// Its Train samples.
        count: usize,
        /// The fewest accepted.
        min_per_site: usize,
        /// The scheme.
        scheme: String,
    },
    /// No Dirichlet draw gave every site enough Train samples.
    #[error(
        "--scheme dirichlet --alpha {alpha}: after {attempts} draws some site still got fewer than {min_per_site} Train samples (at best {smallest}); expected a larger --alpha or fewer --sites"
    )]
    Unbalanced {
        /// The concentration.
        alpha: f64,
        /// Draws tried.
        attempts: u64,
        /// The fewest Train samples per site required.
        min_per_site: usize,
        /// The largest smallest site over the draws.
        smallest: usize,
    },
    /// The output exists and holds something.
    #[error("output {} already exists and is not empty; expected a new directory or an empty one", out.display())]
    OutputNotEmpty {
        /// The output directory.
        out: PathBuf,
    },
    /// The output exists and is not a directory.
    #[error("output {} exists and is not a directory; expected a new directory or an empty one", out.display())]
    OutputNotDirectory {
        /// The output.
        out: PathBuf,
    },
    /// A file or directory could not be written.
    #[error("{}: cannot be written: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A written site does not open as it should (a bug).
    #[error("{site} does not read back: {source}")]
    ReadBack {
        /// The site.
        site: String,
        /// Why.
        source: Box<DataError>,
    },
}

impl From<IoAt> for PartitionError {
    fn from(e: IoAt) -> Self {
        PartitionError::Write {
            path: e.path,
            source: e.source,
        }
    }
}

fn output_error(out: &Path, problem: OutputProblem) -> PartitionError {
    let out = out.to_owned();
    match problem {
        OutputProblem::NotEmpty => PartitionError::OutputNotEmpty { out },
        OutputProblem::NotDirectory => PartitionError::OutputNotDirectory { out },
        OutputProblem::Io(e) => e.into(),
    }
}

/// Returns the directory name of site `index` (from 0): `site-1`, `site-2`, ...
pub(crate) fn site_name(index: usize) -> String {
    format!("site-{}", index + 1)
}

/// Partitions the dataset in `dataset_dir` into `out_dir/site-1` ... `site-N` (and
/// `out_dir/initiator` with [`PartitionOptions::holdout`]).
///
/// Every site is an AlphaMed dataset with the source's full label list in the source's
/// order, so that class indices agree across sites; images keep their paths relative to
/// the dataset directory. Without holdout, Train, Validation and Test are each dealt by
/// the scheme (Dirichlet reuses the Train proportions of each label for the other splits);
/// with it, sites get Train shares only and the initiator all of Validation and Test.
/// Samples the source cannot use are left out and listed in
/// [`PartitionReport::left_out`]. The result depends only on the dataset, the options and
/// the seed. Everything is staged beside `out_dir` and renamed into place once every site
/// reads back: on error nothing is left behind.
pub fn partition_dataset(
    dataset_dir: &Path,
    out_dir: &Path,
    options: &PartitionOptions,
) -> Result<PartitionReport, PartitionError> {
    if options.sites == 0 {
        return Err(PartitionError::NoSites);
    }
    if let PartitionScheme::Dirichlet { alpha } = options.scheme
        && !(alpha.is_finite() && alpha > 0.0)
    {
        return Err(PartitionError::InvalidAlpha { alpha });
    }
    check_fresh_output(out_dir).map_err(|p| output_error(out_dir, p))?;
    let dataset = Dataset::open(dataset_dir, &OpenOptions::default()).map_err(|source| {
        PartitionError::Dataset {
            dir: dataset_dir.to_owned(),
            source: Box::new(source),
        }
    })?;
    check_sizes(&dataset, dataset_dir, options)?;
    let assignment = assign(&dataset, options)?;
    let shares = write_sites(&dataset, &assignment, out_dir, options)?;
    Ok(PartitionReport {
        out_dir: out_dir.to_owned(),
        scheme: options.scheme,
        seed: options.seed,
        labels: dataset.labels,
        shares,
        left_out: dataset.report,
    })
}

/// Refuses more sites than the Train samples (or, by label, the labels) allow.
fn check_sizes(
    dataset: &Dataset,
    dir: &Path,
    options: &PartitionOptions,
) -> Result<(), PartitionError> {
    let train = dataset.train.len();
    if train == 0 {
        return Err(PartitionError::NoTrainSamples {
            dir: dir.to_owned(),
        });
    }
    let min_per_site = options.min_per_site.max(1);
    let max = train / min_per_site;
    if options.sites > max {
        return Err(PartitionError::TooManySites {
            dir: dir.to_owned(),
            sites: options.sites,
            train,
            min_per_site,
            max,
        });
    }
    if options.scheme == PartitionScheme::ByLabel && dataset.labels.len() < options.sites {
        return Err(PartitionError::FewerLabelsThanSites {
            dir: dir.to_owned(),
            labels: dataset.labels.len(),
            sites: options.sites,
        });
    }
    Ok(())
}

/// Returns `path` relative to `root`, `/`-separated, as `annotation.json` writes it.
fn relative_path(root: &Path, path: &Path) -> Result<String, PartitionError> {
    let not_inside = || PartitionError::Write {
        path: path.to_owned(),
        source: io::Error::other("is not a UTF-8 path inside the dataset directory"),
    };
    let relative = path.strip_prefix(root).map_err(|_| not_inside())?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    parts.map(|p| p.join("/")).ok_or_else(not_inside)
}

/// Writes every share into a staging directory, reads each back, and renames the staging
/// directory onto `out_dir`.
fn write_sites(
    dataset: &Dataset,
    assignment: &Assignment,
    out_dir: &Path,
    options: &PartitionOptions,
) -> Result<Vec<SiteShare>, PartitionError> {
    let staging = Staging::new(out_dir).map_err(|p| output_error(out_dir, p))?;
    let count = options.sites + usize::from(options.holdout);
    let mut members: Vec<[Vec<&Sample>; 3]> = (0..count).map(|_| Default::default()).collect();
    for split in Split::ALL {
        for (sample, &site) in dataset.split(split).iter().zip(&assignment[split as usize]) {
            members[site][split as usize].push(sample);
        }
    }
    let mut shares = Vec::with_capacity(count);
    for (index, member) in members.iter().enumerate() {
        let (name, splits) = if index == options.sites {
            (INITIATOR.to_owned(), vec![Split::Validation, Split::Test])
        } else if options.holdout {
            (site_name(index), vec![Split::Train])
        } else {
            (site_name(index), Split::ALL.to_vec())
        };
        let dir = staging.path().join(&name);
        fs::create_dir(&dir).map_err(IoAt::new(&dir))?;
        let counts = write_share(dataset, member, &dir, options.link)?;
        Dataset::open(&dir, &OpenOptions { strict: true }).map_err(|source| {
            PartitionError::ReadBack {
                site: name.clone(),
                source: Box::new(source),
            }
        })?;
        shares.push(SiteShare {
            dir: out_dir.join(&name),
            name,
            splits,
            counts,
        });
    }
    staging.commit().map_err(|p| output_error(out_dir, p))?;
    Ok(shares)
}

/// Places one share's images in `dir` and writes its `annotation.json`; returns the
/// samples per split and label.
fn write_share(
    dataset: &Dataset,
    members: &[Vec<&Sample>; 3],
    dir: &Path,
    link: bool,
) -> Result<[Vec<usize>; 3], PartitionError> {
    let mut counts = [(); 3].map(|_| vec![0; dataset.labels.len()]);
    let mut splits: [Vec<AnnotatedImage>; 3] = Default::default();
    for split in Split::ALL {
        for sample in &members[split as usize] {
            let path = relative_path(&dataset.root, &sample.path)?;
            place_file(&sample.path, &dir.join(&path), link)?;
            counts[split as usize][sample.label] += 1;
            splits[split as usize].push(AnnotatedImage {
                path,
                label: sample.label,
            });
        }
    }
    let [train, validation, test] = &splits;
    write_annotation(dir, &dataset.labels, [train, validation, test], TAG_SOURCE)?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_slash_separated_and_stay_inside() {
        let root = Path::new("/d");
        assert_eq!(
            relative_path(root, Path::new("/d/images/0/a.png")).expect("inside"),
            "images/0/a.png"
        );
        assert!(relative_path(root, Path::new("/elsewhere/a.png")).is_err());
    }
}
