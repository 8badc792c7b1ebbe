//! How one upstream's identifiers become ours: its country and service keys to our codes, its
//! money to our cents. Kept as data (`origin/sync/<name>.json`, one file per upstream format and
//! provider family), not code: a provider adding a country is a line in a file.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use shared::Slug;

use super::money::{Decimal, MoneyError, Rule};

/// The document shapes the adapters read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Format {
    /// `{country: {product: {operator: {cost, count}}}}` (5sim's guest prices).
    #[serde(rename = "5sim")]
    FiveSim,
    /// `{country id: {service code: {cost, count}}}` (sms-activate's and smshub's price list).
    #[serde(rename = "sms-activate")]
    SmsActivate,
}

/// What to do with a service key the table does not list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unlisted {
    /// Keep it when it is already one of our codes.
    Same,
    /// Skip it.
    Skip,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(rename = "_doc", default)]
    pub doc: String,
    pub format: Format,
    /// Our currency per unit of theirs, as decimal text (`"0.011"`: roubles to dollars).
    pub currency_rate: String,
    /// Our markup on their price, in 1/100 of a percent.
    pub markup_bps: u32,
    pub countries: BTreeMap<String, String>,
    pub services: BTreeMap<String, String>,
    pub services_unlisted: Unlisted,
}

/// The mappings shipped with the origin, by name.
const BUILTIN: [(&str, &str); 2] = [
    ("5sim", include_str!("../../sync/5sim.json")),
    ("sms-activate", include_str!("../../sync/sms-activate.json")),
];

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("no mapping named {0:?} (known: 5sim, sms-activate)")]
    Unknown(String),
    #[error("mapping {name}: {reason}")]
    Invalid { name: String, reason: String },
}

impl Mapping {
    /// The shipped mapping `name`, checked: every target is one of our codes, the rate a
    /// positive decimal.
    pub fn builtin(name: &str) -> Result<Mapping, MappingError> {
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| MappingError::Unknown(name.to_owned()))?;
        let invalid = |reason: String| MappingError::Invalid {
            name: name.to_owned(),
            reason,
        };
        let mapping: Mapping = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for code in mapping.countries.values().chain(mapping.services.values()) {
            Slug::check(code).map_err(|e| invalid(format!("{code:?}: {e}")))?;
        }
        let rule = mapping.rule().map_err(|e| invalid(e.to_string()))?;
        if rule.rate.is_zero() {
            return Err(invalid("currency_rate must be above 0".into()));
        }
        Ok(mapping)
    }

    pub fn rule(&self) -> Result<Rule, MoneyError> {
        Ok(Rule {
            rate: Decimal::parse(&self.currency_rate)?,
            markup_bps: self.markup_bps,
        })
    }

    /// Our country code for theirs, if the table has one.
    pub fn country(&self, theirs: &str) -> Option<&str> {
        self.countries.get(theirs).map(String::as_str)
    }

    /// Our service code for theirs: the table's, else theirs itself when it is a valid code and
    /// the table says unlisted keys keep their name.
    pub fn service<'a>(&'a self, theirs: &'a str) -> Option<Cow<'a, str>> {
        match self.services.get(theirs) {
            Some(ours) => Some(Cow::Borrowed(ours.as_str())),
            None if self.services_unlisted == Unlisted::Same && Slug::check(theirs).is_ok() => {
                Some(Cow::Borrowed(theirs))
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_mappings_load_and_map() {
        let five = Mapping::builtin("5sim").unwrap();
        assert_eq!(five.format, Format::FiveSim);
        assert_eq!(five.country("russia"), Some("ru"));
        assert_eq!(five.country("england"), Some("gb"));
        assert_eq!(five.service("vkontakte").as_deref(), Some("vk"));
        assert_eq!(
            five.service("svc-0100").as_deref(),
            Some("svc-0100"),
            "unlisted: same"
        );
        assert_eq!(five.service("Not A Code"), None);
        let sa = Mapping::builtin("sms-activate").unwrap();
        assert_eq!(sa.format, Format::SmsActivate);
        assert_eq!(
            (sa.country("0"), sa.country("16")),
            (Some("ru"), Some("gb"))
        );
        assert_eq!(sa.service("wa").as_deref(), Some("whatsapp"));
        assert_eq!(sa.service("unknown"), None, "unlisted: skipped");
        assert!(matches!(
            Mapping::builtin("nope"),
            Err(MappingError::Unknown(_))
        ));
    }
}
