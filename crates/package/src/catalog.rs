//! The names of model implementations compiled into the engine, which a package's
//! `config.json` may select with `entry_module` + `entry_class`.
//!
//! This crate knows no model itself: the crate that implements models (`fl-torch`, and
//! author crates) builds a catalog and hands it to package validation.

use std::collections::BTreeMap;

/// Known `(entry_module, entry_class)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCatalog {
    modules: BTreeMap<String, Vec<String>>,
}

/// Why an `entry_module` / `entry_class` pair is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogMiss {
    /// No model is registered under this module.
    UnknownModule {
        /// Every known module.
        known: Vec<String>,
    },
    /// The module exists but has no such class.
    UnknownClass {
        /// The classes of this module.
        known: Vec<String>,
    },
}

impl ModelCatalog {
    /// Returns an empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a model under `module` and `class`.
    pub fn register(&mut self, module: impl Into<String>, class: impl Into<String>) -> &mut Self {
        let classes = self.modules.entry(module.into()).or_default();
        let class = class.into();
        if !classes.contains(&class) {
            classes.push(class);
            classes.sort();
        }
        self
    }

    /// Checks that `module` and `class` name a registered model.
    pub fn lookup(&self, module: &str, class: &str) -> Result<(), CatalogMiss> {
        match self.modules.get(module) {
            None => Err(CatalogMiss::UnknownModule {
                known: self.modules.keys().cloned().collect(),
            }),
            Some(classes) if !classes.iter().any(|c| c == class) => {
                Err(CatalogMiss::UnknownClass {
                    known: classes.clone(),
                })
            }
            Some(_) => Ok(()),
        }
    }

    /// Every registered pair, sorted.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.modules
            .iter()
            .flat_map(|(m, cs)| cs.iter().map(move |c| (m.as_str(), c.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_lists_what_is_known() {
        let mut catalog = ModelCatalog::new();
        catalog.register("fedengine.vision", "ResNet18");
        catalog.register("fedengine.vision", "SmallCnn");
        assert_eq!(catalog.lookup("fedengine.vision", "SmallCnn"), Ok(()));
        assert_eq!(
            catalog.lookup("models", "SmallCnn"),
            Err(CatalogMiss::UnknownModule {
                known: vec!["fedengine.vision".into()]
            })
        );
        assert_eq!(
            catalog.lookup("fedengine.vision", "Vgg"),
            Err(CatalogMiss::UnknownClass {
                known: vec!["ResNet18".into(), "SmallCnn".into()]
            })
        );
        assert_eq!(catalog.entries().count(), 2);
    }
}
