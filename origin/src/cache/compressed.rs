//! Compressed representations of cached values. A catalog list can be tens of KB (the large
//! catalog's services list of one provider); compressing it per request would cost more than the
//! rest of a hit. Each distinct body (named by its xxh3 ETag) is compressed once per coding and
//! kept here, bounded by bytes, so every later request for it is a lookup. Which coding a client
//! accepts is HTTP's business (`http::extract`); this module only makes and keeps the bytes.
//!
//! Bodies under [`MIN_BYTES`] are always sent as they are: compression would not pay for itself.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::Value;
use crate::small::Small;

/// Smallest body worth compressing.
pub const MIN_BYTES: usize = 1024;

/// A content coding the origin can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coding {
    Identity,
    Gzip,
    Br,
}

impl Coding {
    /// The `Content-Encoding` value; `None` for identity.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Br => Some("br"),
        }
    }

    /// The ETag suffix of this representation: a strong ETag names exact bytes, so each coding
    /// has its own.
    pub fn etag_suffix(self) -> &'static str {
        match self {
            Coding::Identity => "",
            Coding::Gzip => "-gzip",
            Coding::Br => "-br",
        }
    }
}

/// One representation of a cacheable value: its bytes and its strong `ETag` (quotes included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    pub body: Bytes,
    pub etag: Bytes,
}

/// The compressed representations made so far, keyed by their own ETag (`"<xxh3>-br"`), which
/// names exactly one (body, coding) pair.
#[derive(Clone)]
pub struct Compressed {
    variants: moka::sync::Cache<String, Variant>,
    made: Arc<AtomicU64>,
}

impl Compressed {
    pub fn new(max_bytes: u64) -> Compressed {
        Compressed {
            variants: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, v: &Variant| {
                    u32::try_from(k.len() + v.body.len() + 64).unwrap_or(u32::MAX)
                })
                .build(),
            made: Arc::default(),
        }
    }

    /// `value` in `coding`, compressed at most once per (value, coding); its ETag header made
    /// then too. A lookup builds its key on the stack: a hit allocates and formats nothing.
    pub fn get(&self, value: &Value, coding: Coding) -> Variant {
        if coding == Coding::Identity {
            return Variant {
                body: value.bytes.clone(),
                etag: value.etag.clone(),
            };
        }
        let mut tag = Small::<64>::new();
        let written = write!(
            tag,
            "{}{}\"",
            value.etag_str().trim_end_matches('"'),
            coding.etag_suffix()
        );
        if written.is_err() {
            // Not an ETag this crate made (they are 18 bytes): answer as it is.
            return self.get(value, Coding::Identity);
        }
        self.variants.get_with_by_ref(tag.as_str(), || {
            self.made.fetch_add(1, Ordering::Relaxed);
            Variant {
                body: compress(coding, &value.bytes),
                etag: Bytes::copy_from_slice(tag.as_str().as_bytes()),
            }
        })
    }

    /// How many bodies were compressed (tests: once per entry, not per request).
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }
}

fn compress(coding: Coding, body: &[u8]) -> Bytes {
    let out = match coding {
        Coding::Identity => return Bytes::copy_from_slice(body),
        Coding::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            enc.write_all(body).and_then(|()| enc.finish())
        }
        Coding::Br => {
            let mut out = Vec::new();
            // Quality 6: most of brotli's gain on JSON at a few ms for tens of KB, once.
            let params = brotli::enc::BrotliEncoderParams {
                quality: 6,
                ..Default::default()
            };
            brotli::BrotliCompress(&mut &body[..], &mut out, &params).map(|_| out)
        }
    };
    // Writing to memory cannot fail; were it to, the identity bytes are a correct answer only
    // with identity headers, so an empty body it would be; in-memory encoders do not fail.
    Bytes::from(out.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_body_is_compressed_once_per_coding_and_round_trips() {
        let compressed = Compressed::new(1 << 20);
        let body = Bytes::from(serde_json::to_vec(&vec!["whatsapp"; 500]).unwrap_or_default());
        let value = Value::new(body.clone());
        let br = compressed.get(&value, Coding::Br);
        let again = compressed.get(&value, Coding::Br);
        let gz = compressed.get(&value, Coding::Gzip);
        assert_eq!(compressed.made(), 2);
        assert_eq!(br, again);
        let tag = |v: &Variant| std::str::from_utf8(&v.etag).ok().map(str::to_owned);
        let plain_tag = value.etag_str().trim_end_matches('"').to_owned();
        assert_eq!(tag(&br), Some(format!("{plain_tag}-br\"")));
        assert_eq!(tag(&gz), Some(format!("{plain_tag}-gzip\"")));
        let identity = compressed.get(&value, Coding::Identity);
        assert_eq!(
            (identity.body.clone(), tag(&identity)),
            (body.clone(), Some(value.etag_str().to_owned()))
        );
        assert!(br.body.len() < body.len() / 10 && gz.body.len() < body.len() / 10);
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut &br.body[..], &mut plain).unwrap();
        assert_eq!(plain, body);
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, body);
    }
}
