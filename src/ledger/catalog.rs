//! The plan and cost catalog: which plans exist, what they allow, what generations cost.
//!
//! The built-in catalog is `deploy/catalog.toml` compiled in, so the file operators copy and the
//! default the binary uses cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::features::{Denial, DenialReason};
use super::kind::Kind;

/// Plan id of an account without a subscription.
pub const NO_PLAN: &str = "none";
/// Model used when a request names none.
pub const DEFAULT_MODEL: &str = "standard";

/// Largest monthly allowance a plan may give. Proration multiplies it by the seconds left in
/// a cycle (< 2^22), and the Redis scripts compute with Lua doubles, exact below 2^53.
pub const MAX_ALLOWANCE_UNITS: u64 = 1_000_000_000;
/// Largest monthly price, for the same reason as [`MAX_ALLOWANCE_UNITS`].
pub const MAX_PRICE_CENTS: u64 = 1_000_000_000;
/// Largest cost of one image or one video second, for the same reason.
pub const MAX_UNIT_COST: u64 = 1_000_000_000;
/// Largest number of holds a plan may keep open at once; reclaiming expired holds walks them.
pub const MAX_CONCURRENT_HOLDS: u32 = 1_000;
/// Longest video a plan may allow: one hour.
pub const MAX_VIDEO_SECONDS: u32 = 3_600;
/// Most images one generation may ask for (DESIGN.md §3).
pub const MAX_IMAGES_PER_GENERATION: u32 = 16;

const BUILTIN_TOML: &str = include_str!("../../deploy/catalog.toml");

/// What one plan gives and allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSpec {
    /// Catalog id, e.g. `independent`; `none` for accounts without a plan.
    pub id: String,
    /// Monthly price; decides whether a change is an upgrade or a downgrade.
    pub price_cents: u64,
    /// Units of allowance per billing cycle.
    pub allowance_units: u64,
    /// Models this plan may generate with.
    pub models: Vec<String>,
    /// Generations that may hold funds at the same time.
    pub max_concurrent_holds: u32,
    /// Longest video, in seconds.
    pub max_video_seconds: u32,
}

impl PlanSpec {
    /// Whether the plan may use `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }
}

/// Cost factors of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Images on this model cost the kind's image cost times this.
    pub image_multiplier: u64,
    /// Units per second of video.
    pub video_units_per_second: u64,
}

/// A catalog that failed to load; the message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("catalog is not valid TOML: {0}")]
    Parse(String),
    #[error("catalog key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    image_costs: ImageCostsFile,
    models: BTreeMap<String, ModelSpec>,
    plans: BTreeMap<String, PlanFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageCostsFile {
    character_image: u64,
    location_image: u64,
    first_frame: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    price_cents: u64,
    allowance_units: u64,
    models: Vec<String>,
    max_concurrent_holds: u32,
    max_video_seconds: u32,
}

/// Plans, models and costs. Immutable once loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    image_costs: BTreeMap<Kind, u64>,
    models: BTreeMap<String, ModelSpec>,
    /// Every plan including `none`, cheapest first.
    plans: Vec<PlanSpec>,
}

impl Catalog {
    /// The default catalog of DESIGN.md §2.
    pub fn builtin() -> Catalog {
        Catalog::from_toml_str(BUILTIN_TOML).expect("built-in catalog is valid")
    }

    /// Loads and validates a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Catalog::from_toml_str(&text)
    }

    /// Parses and validates catalog TOML.
    pub fn from_toml_str(text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile =
            toml::from_str(text).map_err(|e| CatalogError::Parse(e.to_string()))?;
        let image_costs = BTreeMap::from([
            (Kind::CharacterImage, file.image_costs.character_image),
            (Kind::LocationImage, file.image_costs.location_image),
            (Kind::FirstFrame, file.image_costs.first_frame),
        ]);
        for (kind, cost) in &image_costs {
            if *cost == 0 || *cost > MAX_UNIT_COST {
                return Err(invalid(
                    format!("image_costs.{kind}"),
                    format!("must be 1..={MAX_UNIT_COST}"),
                ));
            }
        }
        if !file.models.contains_key(DEFAULT_MODEL) {
            return Err(invalid(
                "models",
                format!("model `{DEFAULT_MODEL}` must exist: requests without a model use it"),
            ));
        }
        for (id, model) in &file.models {
            if !super::is_valid_id(id) {
                return Err(invalid(
                    format!("models.{id}"),
                    "ids are 1-128 of [A-Za-z0-9._:-]",
                ));
            }
            let video_ok = (1..=MAX_UNIT_COST).contains(&model.video_units_per_second);
            if !video_ok {
                return Err(invalid(
                    format!("models.{id}.video_units_per_second"),
                    format!("must be 1..={MAX_UNIT_COST}"),
                ));
            }
            let max_image = image_costs.values().max().copied().unwrap_or(1);
            if model.image_multiplier == 0
                || model.image_multiplier.saturating_mul(max_image) > MAX_UNIT_COST
            {
                return Err(invalid(
                    format!("models.{id}.image_multiplier"),
                    format!("must be at least 1 and keep an image's cost within {MAX_UNIT_COST}"),
                ));
            }
        }
        let mut plans = Vec::with_capacity(file.plans.len());
        for (id, plan) in file.plans {
            let key = format!("plans.{id}");
            if !super::is_valid_id(&id) {
                return Err(invalid(key, "ids are 1-128 of [A-Za-z0-9._:-]"));
            }
            if plan.price_cents > MAX_PRICE_CENTS {
                return Err(invalid(
                    format!("{key}.price_cents"),
                    format!("at most {MAX_PRICE_CENTS}"),
                ));
            }
            if plan.allowance_units > MAX_ALLOWANCE_UNITS {
                return Err(invalid(
                    format!("{key}.allowance_units"),
                    format!("at most {MAX_ALLOWANCE_UNITS}"),
                ));
            }
            if plan.models.is_empty() {
                return Err(invalid(format!("{key}.models"), "names no model"));
            }
            for (i, model) in plan.models.iter().enumerate() {
                if !file.models.contains_key(model) {
                    return Err(invalid(
                        format!("{key}.models[{i}]"),
                        format!("unknown model `{model}`"),
                    ));
                }
            }
            if !(1..=MAX_CONCURRENT_HOLDS).contains(&plan.max_concurrent_holds) {
                return Err(invalid(
                    format!("{key}.max_concurrent_holds"),
                    format!("must be 1..={MAX_CONCURRENT_HOLDS}"),
                ));
            }
            if !(1..=MAX_VIDEO_SECONDS).contains(&plan.max_video_seconds) {
                return Err(invalid(
                    format!("{key}.max_video_seconds"),
                    format!("must be 1..={MAX_VIDEO_SECONDS}"),
                ));
            }
            plans.push(PlanSpec {
                id,
                price_cents: plan.price_cents,
                allowance_units: plan.allowance_units,
                models: plan.models,
                max_concurrent_holds: plan.max_concurrent_holds,
                max_video_seconds: plan.max_video_seconds,
            });
        }
        match plans.iter().find(|p| p.id == NO_PLAN) {
            None => return Err(invalid("plans", format!("plan `{NO_PLAN}` must exist"))),
            Some(none) if none.price_cents != 0 || none.allowance_units != 0 => {
                return Err(invalid(
                    format!("plans.{NO_PLAN}"),
                    "must have price_cents = 0 and allowance_units = 0",
                ))
            }
            Some(_) => {}
        }
        plans.sort_by(|a, b| a.price_cents.cmp(&b.price_cents).then(a.id.cmp(&b.id)));
        // Price orders plans: a change to a higher price is an upgrade. Equal prices would make
        // the direction of a change undefined.
        for pair in plans.windows(2) {
            if pair[0].price_cents == pair[1].price_cents {
                return Err(invalid(
                    format!("plans.{}.price_cents", pair[1].id),
                    format!(
                        "equals the price of plan `{}`; prices must differ",
                        pair[0].id
                    ),
                ));
            }
        }
        Ok(Catalog {
            image_costs,
            models: file.models,
            plans,
        })
    }

    /// Every plan including `none`, cheapest first.
    pub fn plans(&self) -> &[PlanSpec] {
        &self.plans
    }

    /// A plan by id (`none` included).
    pub fn plan(&self, id: &str) -> Option<&PlanSpec> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// The row that applies to accounts without a plan.
    pub fn no_plan(&self) -> &PlanSpec {
        self.plan(NO_PLAN).expect("validated at load")
    }

    /// Whether `model` is in the catalog.
    pub fn has_model(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }

    /// Model ids, sorted.
    pub fn model_ids(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// Cost of one image or one video second of `kind` on `model`; `None` for an unknown model.
    pub fn unit_cost(&self, kind: Kind, model: &str) -> Option<u64> {
        let spec = self.models.get(model)?;
        Some(match kind {
            Kind::Video => spec.video_units_per_second,
            image => self.image_costs[&image] * spec.image_multiplier,
        })
    }

    /// Cost of a whole generation: the unit cost times the quantity. Linear on purpose, so a
    /// partial settle charges exactly `unit_cost * actual_quantity`.
    pub fn cost_units(&self, kind: Kind, model: &str, quantity: u32) -> Option<u64> {
        Some(self.unit_cost(kind, model)? * u64::from(quantity))
    }

    /// Whether `plan_id` lets an account with `open_holds` running generations start this one.
    /// Credits never unlock features: only the plan decides. The denial names the cheapest plan
    /// that would allow the generation, if any.
    pub fn check_features(
        &self,
        plan_id: &str,
        kind: Kind,
        model: &str,
        quantity: u32,
        open_holds: u32,
    ) -> Result<(), Denial> {
        let plan = self.plan(plan_id).unwrap_or_else(|| self.no_plan());
        let reason = if !plan.allows_model(model) {
            DenialReason::Model {
                model: model.to_string(),
            }
        } else if kind.is_video() && quantity > plan.max_video_seconds {
            DenialReason::VideoSeconds {
                seconds: quantity,
                max_seconds: plan.max_video_seconds,
            }
        } else if open_holds >= plan.max_concurrent_holds {
            DenialReason::ConcurrentHolds {
                open_holds,
                max_holds: plan.max_concurrent_holds,
            }
        } else {
            return Ok(());
        };
        let needs = self
            .plans
            .iter()
            .find(|p| {
                p.price_cents > plan.price_cents
                    && match &reason {
                        DenialReason::Model { model } => p.allows_model(model),
                        DenialReason::VideoSeconds { seconds, .. } => {
                            p.allows_model(model) && p.max_video_seconds >= *seconds
                        }
                        DenialReason::ConcurrentHolds { open_holds, .. } => {
                            p.max_concurrent_holds > *open_holds
                        }
                    }
            })
            .map(|p| p.id.clone());
        Err(Denial {
            plan: plan.id.clone(),
            needs,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_matches_the_design_table() {
        let c = Catalog::builtin();
        let rows: Vec<_> = c
            .plans()
            .iter()
            .map(|p| {
                (
                    p.id.as_str(),
                    p.price_cents,
                    p.allowance_units,
                    p.models.join(","),
                    p.max_concurrent_holds,
                    p.max_video_seconds,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("none", 0, 0, "standard".into(), 1, 5),
                ("microbudget", 1000, 1000, "standard".into(), 2, 5),
                ("independent", 2500, 2500, "standard,pro".into(), 4, 10),
                ("hollywood", 5000, 5000, "standard,pro,cinema".into(), 8, 20),
            ]
        );
    }

    #[test]
    fn costs_follow_the_design() {
        let c = Catalog::builtin();
        assert_eq!(c.cost_units(Kind::CharacterImage, "standard", 1), Some(4));
        assert_eq!(c.cost_units(Kind::LocationImage, "standard", 3), Some(12));
        assert_eq!(c.cost_units(Kind::FirstFrame, "standard", 1), Some(2));
        assert_eq!(c.cost_units(Kind::CharacterImage, "pro", 1), Some(8));
        assert_eq!(c.cost_units(Kind::FirstFrame, "cinema", 2), Some(16));
        assert_eq!(c.cost_units(Kind::Video, "standard", 5), Some(50));
        assert_eq!(c.cost_units(Kind::Video, "pro", 10), Some(200));
        assert_eq!(c.cost_units(Kind::Video, "cinema", 20), Some(800));
        assert_eq!(c.cost_units(Kind::Video, "ultra", 1), None);
    }

    #[test]
    fn features_come_from_the_plan_and_name_the_plan_that_allows() {
        let c = Catalog::builtin();
        let d = c
            .check_features("microbudget", Kind::Video, "cinema", 5, 0)
            .unwrap_err();
        assert_eq!(d.needs.as_deref(), Some("hollywood"));
        assert_eq!(
            d.to_string(),
            "model `cinema` needs plan `hollywood`; account is on `microbudget`"
        );
        let d = c
            .check_features("independent", Kind::Video, "standard", 11, 0)
            .unwrap_err();
        assert_eq!(d.needs.as_deref(), Some("hollywood"));
        let d = c
            .check_features("hollywood", Kind::Video, "standard", 21, 0)
            .unwrap_err();
        assert_eq!(d.needs, None);
        let d = c
            .check_features("microbudget", Kind::CharacterImage, "standard", 1, 2)
            .unwrap_err();
        assert_eq!(d.needs.as_deref(), Some("independent"));
        assert!(c
            .check_features("microbudget", Kind::CharacterImage, "standard", 16, 1)
            .is_ok());
        // Unknown plan ids (a catalog change removed a plan) fall back to the `none` row.
        assert!(c
            .check_features("retired", Kind::Video, "pro", 1, 0)
            .is_err());
    }

    #[test]
    fn bad_catalogs_name_the_key() {
        let good = BUILTIN_TOML;
        let cases = [
            (
                good.replace(
                    "models = [\"standard\", \"pro\"]",
                    "models = [\"standard\", \"ultra\"]",
                ),
                "plans.independent.models[1]",
            ),
            (
                good.replace("max_video_seconds = 20", "max_video_seconds = 0"),
                "plans.hollywood.max_video_seconds",
            ),
            (
                good.replace("price_cents = 2500", "price_cents = 1000"),
                "price_cents",
            ),
            (
                good.replace("first_frame = 2", "first_frame = 0"),
                "image_costs.first_frame",
            ),
            (good.replace("[plans.none]", "[plans.nothing]"), "plans"),
            (
                good.replace("max_concurrent_holds = 8", "max_holds = 8"),
                "max_holds",
            ),
        ];
        for (text, key) in cases {
            let err = Catalog::from_toml_str(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{err:?} should name {key}");
        }
    }
}
