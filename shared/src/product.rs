//! A product on sale: one provider's numbers for one service in one country. The triple travels
//! together everywhere (price key, price query, purchase), so it is one validated type.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::slug::{Slug, SlugError};

/// `{"provider", "country", "service"}`, each a [`Slug`]: deserialising one validates all three
/// (a bad code is refused naming its field).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Path))]
#[cfg_attr(
    feature = "openapi",
    schema(example = json!({"provider": "5sim", "country": "ad", "service": "whatsapp"}))
)]
#[serde(deny_unknown_fields)]
pub struct Product {
    #[cfg_attr(feature = "openapi", schema(example = "5sim"), param(example = "5sim"))]
    pub provider: Slug,
    #[cfg_attr(feature = "openapi", schema(example = "ad"), param(example = "ad"))]
    pub country: Slug,
    /// The service the number is for (`whatsapp`, `telegram`, …).
    #[cfg_attr(
        feature = "openapi",
        schema(example = "whatsapp"),
        param(example = "whatsapp")
    )]
    pub service: Slug,
}

impl Product {
    /// Parses three raw codes; the error names the field that is wrong.
    pub fn parse(
        provider: &str,
        country: &str,
        service: &str,
    ) -> Result<Product, (&'static str, SlugError)> {
        Ok(Product {
            provider: Slug::parse(provider).map_err(|e| ("provider", e))?,
            country: Slug::parse(country).map_err(|e| ("country", e))?,
            service: Slug::parse(service).map_err(|e| ("service", e))?,
        })
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.provider, self.country, self.service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_bad_field() {
        let p = Product::parse("5sim", "us", "whatsapp").unwrap();
        assert_eq!(p.to_string(), "5sim/us/whatsapp");
        assert_eq!(
            Product::parse("5sim", "US", "whatsapp").unwrap_err().0,
            "country"
        );
        let json: Result<Product, _> =
            serde_json::from_str(r#"{"provider":"5sim","country":"us","service":"Wa"}"#);
        assert!(json.unwrap_err().to_string().contains("lowercase"));
        let extra: Result<Product, _> =
            serde_json::from_str(r#"{"provider":"5sim","country":"us","service":"wa","x":1}"#);
        assert!(extra.is_err(), "unknown fields are refused");
    }
}
