//! Dealing samples to sites: which site (or the initiator) each sample of each split goes
//! to, for every partition scheme, as a pure function of the dataset, options and seed.

use crate::dataset::{Dataset, Sample};
use crate::dirichlet::{cut_by_proportions, dirichlet};
use crate::partition::{
    MAX_DIRICHLET_ATTEMPTS, PartitionError, PartitionOptions, PartitionScheme, site_name,
};
use crate::report::Split;
use crate::rng::{DIRICHLET_STREAM, PARTITION_STREAM, SplitMix64};

/// Where each sample goes: per split, per sample, a site index (`sites` for the initiator).
pub(crate) type Assignment = [Vec<usize>; 3];

/// Deals every sample to a site (or to the initiator, with a holdout).
pub(crate) fn assign(
    dataset: &Dataset,
    options: &PartitionOptions,
) -> Result<Assignment, PartitionError> {
    let sites = options.sites;
    let mut assignment: Assignment = match options.scheme {
        PartitionScheme::Iid => Split::ALL.map(|split| {
            let mut order: Vec<usize> = (0..dataset.split(split).len()).collect();
            SplitMix64::from_words(&[PARTITION_STREAM, options.seed, split as u64])
                .shuffle(&mut order);
            let mut site = vec![0; order.len()];
            for (rank, &i) in order.iter().enumerate() {
                site[i] = rank % sites;
            }
            site
        }),
        PartitionScheme::ByLabel => Split::ALL.map(|split| {
            dataset
                .split(split)
                .iter()
                .map(|s| s.label % sites)
                .collect()
        }),
        PartitionScheme::Dirichlet { alpha } => assign_dirichlet(dataset, options, alpha)?,
    };
    if options.holdout {
        for split in [Split::Validation, Split::Test] {
            assignment[split as usize].fill(sites);
        }
    }
    let train = site_sizes(&assignment[Split::Train as usize], sites);
    if let Some((site, &count)) = train
        .iter()
        .enumerate()
        .find(|(_, c)| **c < options.min_per_site)
    {
        return Err(PartitionError::SiteTooSmall {
            site: site_name(site),
            count,
            min_per_site: options.min_per_site,
            scheme: options.scheme.to_string(),
        });
    }
    Ok(assignment)
}

fn site_sizes(assigned: &[usize], sites: usize) -> Vec<usize> {
    let mut sizes = vec![0; sites];
    for &site in assigned {
        sizes[site] += 1;
    }
    sizes
}

/// Draws per-label proportions until every site has `min_per_site` Train samples, then
/// cuts every split by them.
fn assign_dirichlet(
    dataset: &Dataset,
    options: &PartitionOptions,
    alpha: f64,
) -> Result<Assignment, PartitionError> {
    let mut best = 0;
    for attempt in 0..MAX_DIRICHLET_ATTEMPTS {
        let mut rng = SplitMix64::from_words(&[DIRICHLET_STREAM, options.seed, attempt]);
        let proportions: Vec<Vec<f64>> = (0..dataset.labels.len())
            .map(|_| dirichlet(&mut rng, alpha, options.sites))
            .collect();
        let cut = |split: Split| cut_split(dataset.split(split), &proportions, options.seed, split);
        let train = cut(Split::Train);
        let smallest = site_sizes(&train, options.sites)
            .into_iter()
            .min()
            .unwrap_or(0);
        if smallest >= options.min_per_site {
            return Ok([train, cut(Split::Validation), cut(Split::Test)]);
        }
        best = best.max(smallest);
    }
    Err(PartitionError::Unbalanced {
        alpha,
        attempts: MAX_DIRICHLET_ATTEMPTS,
        min_per_site: options.min_per_site,
        smallest: best,
    })
}

/// Shuffles each label's samples of a split and cuts them by that label's proportions.
fn cut_split(samples: &[Sample], proportions: &[Vec<f64>], seed: u64, split: Split) -> Vec<usize> {
    let mut site = vec![0; samples.len()];
    for (label, p) in proportions.iter().enumerate() {
        let mut members: Vec<usize> = (0..samples.len())
            .filter(|&i| samples[i].label == label)
            .collect();
        SplitMix64::from_words(&[PARTITION_STREAM, seed, split as u64, label as u64])
            .shuffle(&mut members);
        let mut members = members.into_iter();
        for (s, count) in cut_by_proportions(members.len(), p).into_iter().enumerate() {
            for i in members.by_ref().take(count) {
                site[i] = s;
            }
        }
    }
    site
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::report::DatasetReport;

    /// A dataset that exists only in memory: `per_label[l]` samples of label `l` in each
    /// split.
    fn dataset(per_label: &[usize]) -> Dataset {
        let samples = |split: Split| -> Vec<Sample> {
            let mut samples = Vec::new();
            for (label, &n) in per_label.iter().enumerate() {
                for i in 0..n {
                    let path = PathBuf::from(format!("/d/{split}/{label}/{i}.png"));
                    samples.push(Sample { path, label });
                }
            }
            samples
        };
        Dataset {
            root: PathBuf::from("/d"),
            labels: (0..per_label.len()).map(|l| format!("l{l}")).collect(),
            train: samples(Split::Train),
            validation: samples(Split::Validation),
            test: samples(Split::Test),
            report: DatasetReport::default(),
        }
    }

    #[test]
    fn iid_deals_evenly_and_by_label_deals_whole_labels() {
        let d = dataset(&[7, 5, 3, 1]);
        let iid = assign(&d, &PartitionOptions::new(3)).expect("iid");
        for split in Split::ALL {
            assert_eq!(site_sizes(&iid[split as usize], 3), [6, 5, 5], "{split}");
        }
        let by_label = PartitionOptions {
            scheme: PartitionScheme::ByLabel,
            ..PartitionOptions::new(3)
        };
        let a = assign(&d, &by_label).expect("by label");
        for split in Split::ALL {
            for (sample, &site) in d.split(split).iter().zip(&a[split as usize]) {
                assert_eq!(site, sample.label % 3);
            }
        }
        let held = PartitionOptions {
            holdout: true,
            ..by_label
        };
        let a = assign(&d, &held).expect("holdout");
        assert!(a[1].iter().chain(&a[2]).all(|&site| site == 3), "initiator");
        assert_eq!(site_sizes(&a[0], 3), [8, 5, 3]);
    }

    #[test]
    fn sites_below_the_minimum_are_refused() {
        // Label 1 has no sample, so by-label leaves site-2 empty.
        let d = dataset(&[4, 0, 4]);
        let options = PartitionOptions {
            scheme: PartitionScheme::ByLabel,
            ..PartitionOptions::new(2)
        };
        match assign(&d, &options) {
            Err(PartitionError::SiteTooSmall { site, count, .. }) => {
                assert_eq!((site.as_str(), count), ("site-2", 0));
            }
            other => panic!("{other:?}"),
        }
        let zero = PartitionOptions {
            min_per_site: 0,
            ..options
        };
        assert!(
            assign(&d, &zero).is_ok(),
            "a minimum of 0 allows empty sites"
        );
    }

    #[test]
    fn dirichlet_is_seeded_and_splits_follow_train_proportions() {
        let d = dataset(&[50, 50, 50]);
        let options = PartitionOptions {
            scheme: PartitionScheme::Dirichlet { alpha: 0.3 },
            seed: 5,
            ..PartitionOptions::new(3)
        };
        let a = assign(&d, &options).expect("dirichlet");
        assert_eq!(a, assign(&d, &options).expect("again"));
        let reseeded = PartitionOptions { seed: 6, ..options };
        assert_ne!(a, assign(&d, &reseeded).expect("other seed"));
        // Each split has as many samples as Train here, so the cuts are the same.
        for label in 0..3 {
            let sizes = |split: Split| {
                let of_label: Vec<usize> = d
                    .split(split)
                    .iter()
                    .zip(&a[split as usize])
                    .filter(|(s, _)| s.label == label)
                    .map(|(_, &site)| site)
                    .collect();
                site_sizes(&of_label, 3)
            };
            assert_eq!(sizes(Split::Train), sizes(Split::Test), "label {label}");
        }
    }
}
