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
/// Percents of a cycle's allowance at which `usage.threshold` is emitted when the catalog
/// names none (DESIGN.md §8).
pub const DEFAULT_ALERT_THRESHOLDS_PERCENT: [u32; 2] = [80, 100];
/// Hex digits of the content version: 48 bits of SHA-256, plenty to tell catalogs apart.
const VERSION_HEX_DIGITS: usize = 12;

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
    alert_thresholds_percent: Option<Vec<u32>>,
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

/// The cost of one item (an image, or a video second) of one kind on one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub kind: Kind,
    pub model: String,
    /// Units per image, or per video second.
    pub units_per_item: u64,
}

/// Plans, models, costs and usage thresholds. Immutable once loaded; a reload builds a new one
/// (see [`SharedCatalog`](super::SharedCatalog)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    image_costs: BTreeMap<Kind, u64>,
    models: BTreeMap<String, ModelSpec>,
    /// Every plan including `none`, cheapest first.
    plans: Vec<PlanSpec>,
    /// Strictly increasing, each 1..=100.
    alert_thresholds_percent: Vec<u32>,
    /// Hash of the content as served (see [`Catalog::version`]).
    version: String,
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
        let alert_thresholds_percent = match file.alert_thresholds_percent {
            None => DEFAULT_ALERT_THRESHOLDS_PERCENT.to_vec(),
            Some(percents) => {
                check_thresholds(&percents)?;
                percents
            }
        };
        let mut catalog = Catalog {
            image_costs,
            models: file.models,
            plans,
            alert_thresholds_percent,
            version: String::new(),
        };
        catalog.version = catalog.content_hash();
        Ok(catalog)
    }

    /// A short hex hash of what [`Catalog::prices`], [`Catalog::plans`] and
    /// [`Catalog::alert_thresholds_percent`] return, in a fixed text form: comments, key order
    /// and how the file spells costs (image cost × multiplier) do not change it.
    fn content_hash(&self) -> String {
        let mut text = String::new();
        for p in &self.plans {
            text += &format!(
                "plan {} {} {} {} {} {}\n",
                p.id,
                p.price_cents,
                p.allowance_units,
                p.max_concurrent_holds,
                p.max_video_seconds,
                p.models.join(",")
            );
        }
        for price in self.prices() {
            text += &format!(
                "price {} {} {}\n",
                price.kind, price.model, price.units_per_item
            );
        }
        let thresholds: Vec<String> = self
            .alert_thresholds_percent
            .iter()
            .map(u32::to_string)
            .collect();
        text += &format!("thresholds {}\n", thresholds.join(","));
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let mut hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        hex.truncate(VERSION_HEX_DIGITS);
        hex
    }

    /// The content version: equal for catalogs that serve the same plans, prices and
    /// thresholds, different otherwise (a hash, so clients compare it, never order it).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Percents of a cycle's allowance at which `usage.threshold` is emitted, ascending.
    pub fn alert_thresholds_percent(&self) -> &[u32] {
        &self.alert_thresholds_percent
    }

    /// The cost of one item of every kind on every model: kinds in wire order, models sorted.
    pub fn prices(&self) -> Vec<Price> {
        Kind::ALL
            .into_iter()
            .flat_map(|kind| {
                self.models.keys().map(move |model| Price {
                    kind,
                    model: model.clone(),
                    units_per_item: self
                        .unit_cost(kind, model)
                        .expect("the model is in the catalog"),
                })
            })
            .collect()
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

/// Each percent in 1..=100, strictly increasing (so each threshold fires once, in order).
fn check_thresholds(percents: &[u32]) -> Result<(), CatalogError> {
    let mut previous = 0;
    for (i, &percent) in percents.iter().enumerate() {
        let key = format!("alert_thresholds_percent[{i}]");
        if !(1..=100).contains(&percent) {
            return Err(invalid(
                key,
                format!("{percent} is not a percent in 1..=100"),
            ));
        }
        if percent <= previous {
            return Err(invalid(
                key,
                format!("{percent} must be greater than the percent before it ({previous})"),
            ));
        }
        previous = percent;
    }
    Ok(())
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
            (
                good.replace(
                    "alert_thresholds_percent = [80, 100]",
                    "alert_thresholds_percent = [80, 101]",
                ),
                "alert_thresholds_percent[1]",
            ),
            (
                good.replace(
                    "alert_thresholds_percent = [80, 100]",
                    "alert_thresholds_percent = [0, 100]",
                ),
                "alert_thresholds_percent[0]",
            ),
            (
                good.replace(
                    "alert_thresholds_percent = [80, 100]",
                    "alert_thresholds_percent = [90, 50, 100]",
                ),
                "alert_thresholds_percent[1]",
            ),
            (
                good.replace(
                    "alert_thresholds_percent = [80, 100]",
                    "alert_thresholds_percent = [80, 80]",
                ),
                "alert_thresholds_percent[1]",
            ),
            (
                good.replace(
                    "alert_thresholds_percent = [80, 100]",
                    "alert_thresholds_percent = [-5]",
                ),
                "alert_thresholds_percent",
            ),
        ];
        for (text, key) in cases {
            assert_ne!(text, good, "the case must change the catalog ({key})");
            let err = Catalog::from_toml_str(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{err:?} should name {key}");
        }
    }

    #[test]
    fn thresholds_default_to_80_and_100() {
        assert_eq!(Catalog::builtin().alert_thresholds_percent(), &[80, 100]);
        let without = BUILTIN_TOML.replace("alert_thresholds_percent = [80, 100]", "");
        assert_ne!(without, BUILTIN_TOML);
        let c = Catalog::from_toml_str(&without).unwrap();
        assert_eq!(c.alert_thresholds_percent(), &[80, 100]);
        // Same content as the built-in one, so the same version.
        assert_eq!(c.version(), Catalog::builtin().version());
        let custom = BUILTIN_TOML.replace(
            "alert_thresholds_percent = [80, 100]",
            "alert_thresholds_percent = [50, 75, 90, 100]",
        );
        let c = Catalog::from_toml_str(&custom).unwrap();
        assert_eq!(c.alert_thresholds_percent(), &[50, 75, 90, 100]);
        let none = BUILTIN_TOML.replace(
            "alert_thresholds_percent = [80, 100]",
            "alert_thresholds_percent = []",
        );
        let c = Catalog::from_toml_str(&none).unwrap();
        assert!(c.alert_thresholds_percent().is_empty());
    }

    #[test]
    fn prices_are_one_row_per_kind_and_model() {
        let rows: Vec<(Kind, String, u64)> = Catalog::builtin()
            .prices()
            .into_iter()
            .map(|p| (p.kind, p.model, p.units_per_item))
            .collect();
        let expected: Vec<(Kind, String, u64)> = [
            (Kind::CharacterImage, [16, 4, 8]),
            (Kind::LocationImage, [16, 4, 8]),
            (Kind::FirstFrame, [8, 2, 4]),
            (Kind::Video, [40, 10, 20]),
        ]
        .into_iter()
        .flat_map(|(kind, costs)| {
            ["cinema", "standard", "pro"]
                .into_iter()
                .zip(costs)
                .map(move |(model, cost)| (kind, model.to_string(), cost))
        })
        .collect();
        let mut expected = expected;
        expected.sort();
        let mut rows = rows;
        rows.sort();
        assert_eq!(rows, expected);
    }

    #[test]
    fn version_follows_the_content_not_the_text() {
        let base = Catalog::builtin();
        assert_eq!(base.version().len(), VERSION_HEX_DIGITS);
        assert!(base.version().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(base.version(), Catalog::builtin().version());
        // Comments, blank lines and the order of tables do not change the content.
        let mut reordered = String::from("# an operator's note\n\n");
        let (head, plans) = BUILTIN_TOML.split_once("[plans.none]").unwrap();
        reordered += head;
        let mut tables: Vec<String> = format!("[plans.none]{plans}")
            .split("\n[")
            .map(|t| t.trim_start_matches('[').to_string())
            .collect();
        tables.reverse();
        for table in tables {
            reordered += &format!("\n[{}\n", table.trim_end());
        }
        let same = Catalog::from_toml_str(&reordered).unwrap();
        assert_eq!(same, base);
        assert_eq!(same.version(), base.version());
        // Image cost × multiplier spelled differently serves the same prices.
        let respelled = BUILTIN_TOML
            .replace("character_image = 4", "character_image = 2")
            .replace("location_image = 4", "location_image = 2")
            .replace("first_frame = 2", "first_frame = 1")
            .replace("image_multiplier = 1", "image_multiplier = 2")
            .replace(
                "image_multiplier = 2\nvideo_units_per_second = 20",
                "image_multiplier = 4\nvideo_units_per_second = 20",
            )
            .replace(
                "image_multiplier = 4\nvideo_units_per_second = 40",
                "image_multiplier = 8\nvideo_units_per_second = 40",
            );
        let respelled = Catalog::from_toml_str(&respelled).unwrap();
        assert_eq!(respelled.prices(), base.prices());
        assert_eq!(respelled.version(), base.version());
        // Any served change changes the version.
        let changes = [
            ("video_units_per_second = 40", "video_units_per_second = 41"),
            ("allowance_units = 2500", "allowance_units = 2600"),
            ("price_cents = 5000", "price_cents = 5100"),
            ("max_concurrent_holds = 4", "max_concurrent_holds = 5"),
            ("max_video_seconds = 10", "max_video_seconds = 11"),
            (
                "models = [\"standard\", \"pro\"]",
                "models = [\"standard\", \"cinema\"]",
            ),
            (
                "alert_thresholds_percent = [80, 100]",
                "alert_thresholds_percent = [90, 100]",
            ),
        ];
        for (from, to) in changes {
            let text = BUILTIN_TOML.replacen(from, to, 1);
            assert_ne!(text, BUILTIN_TOML, "{from}");
            let changed = Catalog::from_toml_str(&text).unwrap();
            assert_ne!(changed.version(), base.version(), "{from} -> {to}");
        }
    }
}
