//! What a partition wrote: samples per label for every site and split, printed as one
//! table per split (rows labels, columns sites, with totals).

use std::fmt;
use std::path::PathBuf;

use crate::partition::PartitionScheme;
use crate::report::{DatasetReport, Split};
use crate::table::write_table;

/// One output directory of a partition: a site, or the initiator's holdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteShare {
    /// `site-1` ... `site-N`, or `initiator`.
    pub name: String,
    /// Its dataset directory, inside the output directory.
    pub dir: PathBuf,
    /// The splits it receives: all three, only Train (sites with a holdout), or Validation
    /// and Test (the initiator).
    pub splits: Vec<Split>,
    /// Samples per split (in [`Split::ALL`] order) and label.
    pub counts: [Vec<usize>; 3],
}

impl SiteShare {
    /// Returns how many samples of `split` it holds.
    pub fn total(&self, split: Split) -> usize {
        self.counts[split as usize].iter().sum()
    }

    /// Returns how many samples of `split` and `label` (a class index) it holds.
    pub fn count(&self, split: Split, label: usize) -> usize {
        self.counts[split as usize][label]
    }
}

/// What [`partition_dataset`](crate::partition_dataset) wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionReport {
    /// The output directory.
    pub out_dir: PathBuf,
    /// The scheme used.
    pub scheme: PartitionScheme,
    /// The seed used.
    pub seed: u64,
    /// Class names, the same in every site's `annotation.json`.
    pub labels: Vec<String>,
    /// The sites in order, then the initiator when there is a holdout.
    pub shares: Vec<SiteShare>,
    /// Samples of the source dataset that could not be used and were not distributed.
    pub left_out: DatasetReport,
}

impl PartitionReport {
    /// Returns the share called `name` (`site-1`, ..., `initiator`).
    pub fn share(&self, name: &str) -> Option<&SiteShare> {
        self.shares.iter().find(|s| s.name == name)
    }

    /// Returns how many samples of `split` were distributed.
    pub fn total(&self, split: Split) -> usize {
        self.shares.iter().map(|s| s.total(split)).sum()
    }

    fn write_split(&self, f: &mut fmt::Formatter<'_>, split: Split) -> fmt::Result {
        let shares: Vec<&SiteShare> = self
            .shares
            .iter()
            .filter(|s| s.splits.contains(&split))
            .collect();
        writeln!(f, "{split}:")?;
        let mut header = vec!["label".to_owned()];
        header.extend(shares.iter().map(|s| s.name.clone()));
        header.push("total".into());
        let rows: Vec<Vec<String>> = self
            .labels
            .iter()
            .enumerate()
            .map(|(l, name)| {
                let mut row = vec![name.clone()];
                row.extend(shares.iter().map(|s| s.count(split, l).to_string()));
                row.push(
                    shares
                        .iter()
                        .map(|s| s.count(split, l))
                        .sum::<usize>()
                        .to_string(),
                );
                row
            })
            .collect();
        let mut totals = vec!["total".to_owned()];
        totals.extend(shares.iter().map(|s| s.total(split).to_string()));
        totals.push(self.total(split).to_string());
        write_table(f, &header, &rows, &totals)
    }
}

/// A summary line, then for each split that has samples a table of samples per label
/// (rows) and site (columns) with totals, then what the source left out.
impl fmt::Display for PartitionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sites = self.shares.iter().filter(|s| s.name != "initiator").count();
        let holdout = if sites < self.shares.len() {
            ", Validation and Test held out for the initiator"
        } else {
            ""
        };
        writeln!(
            f,
            "partitioned into {sites} sites in {} ({}, seed {}{holdout})",
            self.out_dir.display(),
            self.scheme,
            self.seed
        )?;
        for split in Split::ALL {
            if self.total(split) > 0 {
                self.write_split(f, split)?;
            }
        }
        if self.left_out.total_skipped() > 0 {
            writeln!(
                f,
                "left out {} unusable samples of the source:",
                self.left_out.total_skipped()
            )?;
            for line in self.left_out.to_string().lines() {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}
