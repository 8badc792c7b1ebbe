//! Compressed representations of cacheable bodies. A catalog list can be tens of KB (the large
//! catalog's services list of one provider); compressing it per request would cost more than the
//! rest of a hit. Each distinct body (named by its xxh3 ETag) is compressed once per coding and
//! kept here, bounded by bytes, so every later request for it is a lookup.
//!
//! Bodies under [`MIN_BYTES`] are always sent as they are: compression would not pay for itself.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderValue;
use bytes::Bytes;

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

    /// The client's preference from `Accept-Encoding`: brotli if accepted, else gzip, else
    /// identity (a coding listed with `q=0` is refused; `*` accepts both).
    pub fn preferred(accept_encoding: Option<&HeaderValue>) -> Coding {
        let Some(value) = accept_encoding.and_then(|v| v.to_str().ok()) else {
            return Coding::Identity;
        };
        let mut br = None;
        let mut gzip = None;
        let mut any = None;
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let accepted = !parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            match name.as_str() {
                "br" => br = Some(accepted),
                "gzip" | "x-gzip" => gzip = Some(accepted),
                "*" => any = Some(accepted),
                _ => {}
            }
        }
        if br.or(any) == Some(true) {
            Coding::Br
        } else if gzip.or(any) == Some(true) {
            Coding::Gzip
        } else {
            Coding::Identity
        }
    }
}

/// The compressed bodies made so far, by (ETag, coding).
#[derive(Clone)]
pub struct Compressed {
    bodies: moka::sync::Cache<(String, Coding), Bytes>,
    made: Arc<AtomicU64>,
}

impl Compressed {
    pub fn new(max_bytes: u64) -> Compressed {
        Compressed {
            bodies: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &(String, Coding), v: &Bytes| {
                    u32::try_from(k.0.len() + v.len() + 64).unwrap_or(u32::MAX)
                })
                .build(),
            made: Arc::default(),
        }
    }

    /// `body` in `coding`, compressed at most once per (ETag, coding).
    pub fn get(&self, etag: &str, coding: Coding, body: &Bytes) -> Bytes {
        if coding == Coding::Identity {
            return body.clone();
        }
        self.bodies.get_with((etag.to_owned(), coding), || {
            self.made.fetch_add(1, Ordering::Relaxed);
            compress(coding, body)
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
    // with identity headers, so the caller never gets here with an error (see `get`).
    Bytes::from(out.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pref(v: &str) -> Coding {
        Coding::preferred(Some(
            &HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
        ))
    }

    #[test]
    fn negotiation_follows_accept_encoding() {
        assert_eq!(Coding::preferred(None), Coding::Identity);
        assert_eq!(pref("gzip, deflate, br, zstd"), Coding::Br);
        assert_eq!(pref("gzip"), Coding::Gzip);
        assert_eq!(pref("br;q=0, gzip;q=0.5"), Coding::Gzip);
        assert_eq!(pref("br;q=0, gzip;q=0"), Coding::Identity);
        assert_eq!(pref("*"), Coding::Br);
        assert_eq!(pref("identity"), Coding::Identity);
        assert_eq!(pref("deflate"), Coding::Identity);
    }

    #[test]
    fn each_body_is_compressed_once_per_coding_and_round_trips() {
        let compressed = Compressed::new(1 << 20);
        let body = Bytes::from(serde_json::to_vec(&vec!["whatsapp"; 500]).unwrap_or_default());
        let br = compressed.get("\"e1\"", Coding::Br, &body);
        let again = compressed.get("\"e1\"", Coding::Br, &body);
        let gz = compressed.get("\"e1\"", Coding::Gzip, &body);
        assert_eq!(compressed.made(), 2);
        assert_eq!(br, again);
        assert!(br.len() < body.len() / 10 && gz.len() < body.len() / 10);
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut plain).unwrap();
        assert_eq!(plain, body);
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
        assert_eq!(plain, body);
    }
}
