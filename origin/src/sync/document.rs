//! Reading an upstream's price document as it arrives: the top-level object is walked one country
//! at a time (only one country's entries are ever held), each offer is priced exactly (its cost
//! is kept as the JSON text it was, never a float: [`super::money`]) and handed on. A document
//! that is not JSON, is cut short, or holds one bad value is refused whole, naming where.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;

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

/// Reads the document in `reader`, calling `each` for every offer in document order.
pub fn read(
    format: Format,
    rule: &Rule,
    reader: impl Read,
    each: &mut dyn FnMut(Offer),
) -> Result<(), DocumentError> {
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let mut bad: Option<DocumentError> = None;
    let walk = Walk {
        format,
        rule,
        each,
        bad: &mut bad,
    };
    let walked = de::Deserializer::deserialize_map(&mut de, walk);
    if let Some(bad) = bad {
        return Err(bad);
    }
    walked.map_err(|e| DocumentError::Malformed(e.to_string()))?;
    de.end()
        .map_err(|e| DocumentError::Malformed(e.to_string()))
}

struct Walk<'a> {
    format: Format,
    rule: &'a Rule,
    each: &'a mut dyn FnMut(Offer),
    bad: &'a mut Option<DocumentError>,
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
                country: &country,
                each: &mut *self.each,
                bad: &mut *self.bad,
            };
            map.next_value_seed(seed)?;
            if self.bad.is_some() {
                return Err(de::Error::custom("a bad value"));
            }
        }
        Ok(())
    }
}

/// One country's value, read whole (a country is small), then priced.
struct Country<'a> {
    format: Format,
    rule: &'a Rule,
    country: &'a str,
    each: &'a mut dyn FnMut(Offer),
    bad: &'a mut Option<DocumentError>,
}

impl<'de> DeserializeSeed<'de> for Country<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        let offers = match self.format {
            Format::SmsActivate => {
                let services = BTreeMap::<String, Quote>::deserialize(de)?;
                services
                    .into_iter()
                    .map(|(service, quote)| self.price(&service, &quote).map(|o| (service, o)))
                    .collect::<Result<Vec<_>, _>>()
            }
            // Several operators sell one product: the cheapest with numbers in stock (the
            // cheapest of all when none has any), at the stock of all of them together.
            Format::FiveSim => {
                let products = BTreeMap::<String, BTreeMap<String, Quote>>::deserialize(de)?;
                products
                    .into_iter()
                    .filter(|(_, operators)| !operators.is_empty())
                    .map(|(product, operators)| {
                        let priced = operators
                            .values()
                            .map(|q| self.price(&product, q))
                            .collect::<Result<Vec<(i64, i64)>, _>>()?;
                        let stock = priced.iter().map(|(_, s)| *s).sum::<i64>();
                        let cheapest = priced
                            .iter()
                            .filter(|(_, s)| *s > 0)
                            .map(|(p, _)| *p)
                            .min()
                            .or_else(|| priced.iter().map(|(p, _)| *p).min())
                            .unwrap_or(0);
                        Ok((product, (cheapest, stock)))
                    })
                    .collect::<Result<Vec<_>, _>>()
            }
        };
        match offers {
            Ok(offers) => {
                for (service, (price_cents, stock)) in offers {
                    (self.each)(Offer {
                        country: self.country.to_owned(),
                        service,
                        price_cents,
                        stock,
                    });
                }
            }
            Err(e) => *self.bad = Some(e),
        }
        Ok(())
    }
}

impl Country<'_> {
    fn price(&self, service: &str, quote: &Quote) -> Result<(i64, i64), DocumentError> {
        let bad = |reason: String| DocumentError::BadValue {
            country: self.country.to_owned(),
            service: service.to_owned(),
            reason,
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

    fn offers(format: Format, text: &str) -> Result<Vec<Offer>, DocumentError> {
        let mut out = Vec::new();
        read(format, &rule(), text.as_bytes(), &mut |o| out.push(o)).map(|()| out)
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
}
