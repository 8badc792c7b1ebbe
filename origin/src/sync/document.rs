//! Reading an upstream's price document as it arrives, in memory bounded by what is kept: the
//! top-level object is walked one country at a time and each country one entry at a time; an
//! entry the caller does not want (a country or service no mapping knows) is skipped without
//! being stored (its value parsed past, never held), and a wanted one is priced exactly (its cost
//! is kept as the JSON text it was, never a float: [`super::money`]) and handed on at once. A
//! document that is not JSON, is cut short, or holds one bad value in an entry that is wanted is
//! refused whole, naming where (upstream text in the message is bounded and made inert:
//! [`super::inert`]).
//!
//! Measured (the sync suite): a 38 MB document of one country with 1 000 000 products no mapping
//! knows took the origin to 956 MB resident when every offer was collected first; read this way
//! its peak stays near the origin's own (`a_huge_unmapped_document_is_read_in_bounded_memory`).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::inert;
use super::mapping::Format;
use super::money::Rule;

/// One offer of the document, priced: the upstream's own keys, our cents, its stock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub country: String,
    pub service: String,
    pub price_cents: i64,
    pub stock: i64,
}

/// Which entries the caller keeps (by the upstream's own keys); the rest are skipped unread.
pub trait Wanted {
    fn country(&self, theirs: &str) -> bool;
    fn service(&self, theirs: &str) -> bool;
}

/// Every entry (tests, tools).
pub struct Everything;

impl Wanted for Everything {
    fn country(&self, _: &str) -> bool {
        true
    }
    fn service(&self, _: &str) -> bool {
        true
    }
}

/// `{cost, count, …}`: the fields read, as their JSON text.
#[derive(Deserialize)]
struct Quote {
    cost: Box<RawValue>,
    count: Box<RawValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON, cut short, or not the expected shape.
    #[error("malformed document: {0}")]
    Malformed(String),
    /// A value that is no price or count; the whole document is refused.
    #[error("{country}/{service}: {reason}")]
    BadValue {
        country: String,
        service: String,
        reason: String,
    },
}

/// What a read saw besides the offers it handed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Entries (a country's service or product) nobody wanted: skipped unread.
    pub entries: usize,
}

/// Reads the document in `reader`, calling `each` for every wanted offer in document order.
pub fn read(
    format: Format,
    rule: &Rule,
    wanted: &dyn Wanted,
    reader: impl Read,
    each: &mut dyn FnMut(Offer),
) -> Result<Skipped, DocumentError> {
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let mut bad: Option<DocumentError> = None;
    let mut skipped = Skipped::default();
    let walk = Walk {
        format,
        rule,
        wanted,
        each,
        bad: &mut bad,
        skipped: &mut skipped,
    };
    let walked = de::Deserializer::deserialize_map(&mut de, walk);
    if let Some(bad) = bad {
        return Err(bad);
    }
    walked.map_err(|e| DocumentError::Malformed(inert::text(&e.to_string())))?;
    de.end()
        .map_err(|e| DocumentError::Malformed(inert::text(&e.to_string())))?;
    Ok(skipped)
}

struct Walk<'a> {
    format: Format,
    rule: &'a Rule,
    wanted: &'a dyn Wanted,
    each: &'a mut dyn FnMut(Offer),
    bad: &'a mut Option<DocumentError>,
    skipped: &'a mut Skipped,
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of countries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(country) = map.next_key::<String>()? {
            let seed = Country {
                format: self.format,
                rule: self.rule,
                wanted: self.wanted,
                keep: self.wanted.country(&country),
                country: &country,
                each: &mut *self.each,
                bad: &mut *self.bad,
                skipped: &mut *self.skipped,
            };
            map.next_value_seed(seed)?;
            if self.bad.is_some() {
                return Err(de::Error::custom("a bad value"));
            }
        }
        Ok(())
    }
}

/// One country's value, walked entry by entry.
struct Country<'a> {
    format: Format,
    rule: &'a Rule,
    wanted: &'a dyn Wanted,
    /// Whether the country itself is wanted (else every entry is skipped, and counted).
    keep: bool,
    country: &'a str,
    each: &'a mut dyn FnMut(Offer),
    bad: &'a mut Option<DocumentError>,
    skipped: &'a mut Skipped,
}

impl<'de> DeserializeSeed<'de> for Country<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Country<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of services")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(service) = map.next_key::<String>()? {
            if !(self.keep && self.wanted.service(&service)) {
                map.next_value::<IgnoredAny>()?;
                self.skipped.entries += 1;
                continue;
            }
            let priced = match self.format {
                Format::SmsActivate => {
                    let quote = map.next_value::<Quote>()?;
                    self.price(&service, &quote)
                }
                // Several operators sell one product: the cheapest with numbers in stock (the
                // cheapest of all when none has any), at the stock of all of them together (at
                // most the catalog's MAX_STOCK).
                Format::FiveSim => {
                    // One product's operators: a handful, held while this entry is priced.
                    let operators = map.next_value::<BTreeMap<String, Quote>>()?;
                    if operators.is_empty() {
                        continue;
                    }
                    self.fold(&service, &operators)
                }
            };
            match priced {
                Ok((price_cents, stock)) => (self.each)(Offer {
                    country: self.country.to_owned(),
                    service,
                    price_cents,
                    stock,
                }),
                Err(e) => {
                    *self.bad = Some(e);
                    return Err(de::Error::custom("a bad value"));
                }
            }
        }
        Ok(())
    }
}

impl Country<'_> {
    fn fold(
        &self,
        product: &str,
        operators: &BTreeMap<String, Quote>,
    ) -> Result<(i64, i64), DocumentError> {
        let priced = operators
            .values()
            .map(|q| self.price(product, q))
            .collect::<Result<Vec<(i64, i64)>, _>>()?;
        let stock = priced
            .iter()
            .fold(0i64, |sum, (_, s)| sum.saturating_add(*s))
            .min(shared::types::MAX_STOCK);
        let cheapest = priced
            .iter()
            .filter(|(_, s)| *s > 0)
            .map(|(p, _)| *p)
            .min()
            .or_else(|| priced.iter().map(|(p, _)| *p).min())
            .unwrap_or(0);
        Ok((cheapest, stock))
    }

    fn price(&self, service: &str, quote: &Quote) -> Result<(i64, i64), DocumentError> {
        let bad = |reason: String| DocumentError::BadValue {
            country: inert::text(self.country),
            service: inert::text(service),
            reason: inert::text(&reason),
        };
        let cents = self
            .rule
            .cents(quote.cost.get())
            .map_err(|e| bad(format!("cost: {e}")))?;
        if cents > shared::types::MAX_PRICE_CENTS {
            return Err(bad(format!(
                "cost {} is {cents} cents, above the catalog's {} (a mistake upstream?)",
                quote.cost.get(),
                shared::types::MAX_PRICE_CENTS
            )));
        }
        let count_text = quote.count.get().trim().trim_matches('"');
        let stock: i64 = count_text
            .parse()
            .ok()
            .filter(|n: &i64| (0..=shared::types::MAX_STOCK).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "count {:?} is not a whole number from 0 to {}",
                    quote.count.get(),
                    shared::types::MAX_STOCK
                ))
            })?;
        Ok((cents, stock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::money::Decimal;

    fn rule() -> Rule {
        Rule {
            rate: Decimal::parse("1").unwrap(),
            markup_bps: 0,
        }
    }

    /// The offers of a document, sorted (they come in document order).
    fn offers(format: Format, text: &str) -> Result<Vec<Offer>, DocumentError> {
        let mut out = Vec::new();
        read(format, &rule(), &Everything, text.as_bytes(), &mut |o| {
            out.push(o)
        })?;
        out.sort_by(|a, b| (&a.country, &a.service).cmp(&(&b.country, &b.service)));
        Ok(out)
    }

    fn offer(country: &str, service: &str, price_cents: i64, stock: i64) -> Offer {
        Offer {
            country: country.into(),
            service: service.into(),
            price_cents,
            stock,
        }
    }

    #[test]
    fn sms_activate_documents() {
        let doc = r#"{"0": {"wa": {"cost": 12.5, "count": 100, "physicalCount": 3},
                              "tg": {"cost": "0.1", "count": "0"}},
                      "16": {"wa": {"cost": 1e1, "count": 7}}}"#;
        assert_eq!(
            offers(Format::SmsActivate, doc).unwrap(),
            vec![
                offer("0", "tg", 10, 0),
                offer("0", "wa", 1250, 100),
                offer("16", "wa", 1000, 7)
            ]
        );
    }

    #[test]
    fn fivesim_documents_fold_operators() {
        let doc = r#"{"russia": {"whatsapp": {"virtual21": {"cost": 30, "count": 0, "rate": 99},
                                               "mts": {"cost": 25.5, "count": 10},
                                               "beeline": {"cost": 27, "count": 5}},
                                  "telegram": {"any": {"cost": 9, "count": 0}, "b": {"cost": 8, "count": 0}},
                                  "empty": {}}}"#;
        assert_eq!(
            offers(Format::FiveSim, doc).unwrap(),
            vec![
                offer("russia", "telegram", 800, 0),
                offer("russia", "whatsapp", 2550, 15)
            ]
        );
    }

    #[test]
    fn one_bad_value_or_a_broken_document_refuses_the_whole() {
        for doc in [
            r#"{"0": {"wa": {"cost": -1, "count": 1}}}"#,
            r#"{"0": {"wa": {"cost": "NaN", "count": 1}}}"#,
            r#"{"0": {"wa": {"cost": 1, "count": -3}}}"#,
            r#"{"0": {"wa": {"cost": 1, "count": 1.5}}}"#,
        ] {
            let err = offers(Format::SmsActivate, doc).unwrap_err();
            assert!(
                matches!(err, DocumentError::BadValue { .. }),
                "{doc}: {err}"
            );
            assert!(err.to_string().starts_with("0/wa:"), "{err}");
        }
        for doc in [
            r#"{"0": {"wa": {"cost": 1, "count": 1}}"#,
            r#"{"0": {"wa": {"cost": 1"#,
            "BAD_KEY",
            "[]",
            r#"{"0": {"wa": {"count": 1}}}"#,
            r#"{"0": {"wa": {"cost": 1, "count": 1}}} trailing"#,
            "",
        ] {
            let err = offers(Format::SmsActivate, doc).unwrap_err();
            assert!(matches!(err, DocumentError::Malformed(_)), "{doc:?}: {err}");
        }
        assert_eq!(
            offers(Format::SmsActivate, "{}").unwrap(),
            vec![],
            "empty is not malformed"
        );
    }

    #[test]
    fn operators_summed_never_pass_the_catalogs_stock_limit() {
        // Three operators at the limit each: 30 000 000 summed, kept at 10 000 000.
        let max = shared::types::MAX_STOCK;
        let doc = format!(
            r#"{{"russia": {{"whatsapp": {{"a": {{"cost": 1, "count": {max}}},
                                         "b": {{"cost": 2, "count": {max}}},
                                         "c": {{"cost": 3, "count": {max}}}}}}}}}"#
        );
        assert_eq!(
            offers(Format::FiveSim, &doc).unwrap(),
            vec![offer("russia", "whatsapp", 100, max)]
        );
    }

    #[test]
    fn unwanted_entries_are_skipped_unread_and_counted() {
        struct OnlyWa;
        impl Wanted for OnlyWa {
            fn country(&self, theirs: &str) -> bool {
                theirs == "0"
            }
            fn service(&self, theirs: &str) -> bool {
                theirs == "wa"
            }
        }
        // A bad value in an entry nobody wants does not refuse the document: it is never read.
        let doc = r#"{"0": {"wa": {"cost": 1, "count": 1}, "xx": {"cost": "NaN", "count": -1},
                            "yy": [1, 2, {"deep": true}]},
                      "99": {"wa": {"cost": 2, "count": 2}}}"#;
        let mut out = Vec::new();
        let skipped = read(
            Format::SmsActivate,
            &rule(),
            &OnlyWa,
            doc.as_bytes(),
            &mut |o| out.push(o),
        )
        .unwrap();
        assert_eq!(out, vec![offer("0", "wa", 100, 1)]);
        assert_eq!(skipped.entries, 3);
    }

    #[test]
    fn upstream_text_in_an_error_is_bounded_and_inert() {
        let key = format!("\\u001b[2J\\u001b[H{}", "x".repeat(100_000));
        let doc = format!(r#"{{"{key}": {{"wa": {{"cost": -1, "count": 1}}}}}}"#);
        let err = offers(Format::SmsActivate, &doc).unwrap_err().to_string();
        assert!(!err.contains('\u{1b}'), "{err:?}");
        assert!(err.len() < 1_000, "{} bytes", err.len());
        assert!(err.contains("\\u{1b}[2J"), "{err:?}");
    }
}
