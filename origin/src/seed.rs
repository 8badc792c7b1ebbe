//! The deterministic catalog: the same scale always gives the same rows, so tests and
//! benchmarks can name codes and compare runs. Seeding is idempotent (existing rows are kept)
//! and streams prices through `COPY`, so the large scale (~600k prices) loads in seconds.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use xxhash_rust::xxh3::xxh3_64_with_seed;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// 3 providers × 20 countries × 25 services: development and tests.
    Small,
    /// 2 providers × 50 countries × 105 services (~10k prices): the benchmark's small catalog.
    /// Its codes are a prefix of the large scale's, so the same URLs exist in both.
    #[value(name = "10k")]
    TenK,
    /// 5 providers × 60 countries × 100 services (~29k prices): query-plan tests.
    Medium,
    /// 5 providers × 180 countries × 700 services (~600k prices): benchmarks.
    Large,
}

impl Scale {
    /// Phone numbers seeded per provider and country.
    fn numbers_per_pool(self) -> i32 {
        match self {
            Scale::Small => 200,
            Scale::TenK | Scale::Medium | Scale::Large => 20,
        }
    }

    fn dims(self) -> (usize, usize, usize) {
        match self {
            Scale::Small => (3, 20, 25),
            Scale::TenK => (2, 50, 105),
            Scale::Medium => (5, 60, 100),
            Scale::Large => (5, 180, 700),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub providers: usize,
    pub countries: usize,
    pub services: usize,
    /// Price rows in the table after seeding.
    pub prices: i64,
    pub elapsed: Duration,
}

const PROVIDERS: [(&str, &str); 5] = [
    ("5sim", "5SIM"),
    ("sms-activate", "SMS-Activate"),
    ("onlinesim", "OnlineSIM"),
    ("smshub", "SMSHub"),
    ("grizzly", "Grizzly SMS"),
];

const SERVICES: [(&str, &str); 40] = [
    ("whatsapp", "WhatsApp"),
    ("telegram", "Telegram"),
    ("google", "Google"),
    ("facebook", "Facebook"),
    ("instagram", "Instagram"),
    ("twitter", "X (Twitter)"),
    ("tiktok", "TikTok"),
    ("discord", "Discord"),
    ("viber", "Viber"),
    ("wechat", "WeChat"),
    ("line", "LINE"),
    ("signal", "Signal"),
    ("uber", "Uber"),
    ("amazon", "Amazon"),
    ("microsoft", "Microsoft"),
    ("apple", "Apple"),
    ("yahoo", "Yahoo"),
    ("netflix", "Netflix"),
    ("paypal", "PayPal"),
    ("airbnb", "Airbnb"),
    ("tinder", "Tinder"),
    ("bumble", "Bumble"),
    ("snapchat", "Snapchat"),
    ("linkedin", "LinkedIn"),
    ("steam", "Steam"),
    ("openai", "OpenAI"),
    ("kakaotalk", "KakaoTalk"),
    ("naver", "Naver"),
    ("alibaba", "Alibaba"),
    ("ebay", "eBay"),
    ("shopee", "Shopee"),
    ("grab", "Grab"),
    ("bolt", "Bolt"),
    ("lyft", "Lyft"),
    ("coinbase", "Coinbase"),
    ("binance", "Binance"),
    ("revolut", "Revolut"),
    ("wise", "Wise"),
    ("zoom", "Zoom"),
    ("skype", "Skype"),
];

/// Whether a provider offers a service in a country (~95% of combinations do), its price and
/// its stock, all derived from the codes so every run agrees.
fn offer(p: usize, c: usize, s: usize) -> Option<(i64, i64)> {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&(p as u32).to_le_bytes());
    key[4..8].copy_from_slice(&(c as u32).to_le_bytes());
    key[8..].copy_from_slice(&(s as u32).to_le_bytes());
    let h = xxh3_64_with_seed(&key, 0x6e65_786e_756d);
    if h % 100 >= 95 {
        return None;
    }
    let price_cents = 5 + ((h >> 8) % 496) as i64; // 5¢ … 5.00 $
    let stock = ((h >> 24) % 5000) as i64;
    Some((price_cents, stock))
}

fn service_list(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| match SERVICES.get(i) {
            Some((code, name)) => ((*code).to_owned(), (*name).to_owned()),
            None => (format!("svc-{i:04}"), format!("Service {i:04}")),
        })
        .collect()
}

fn country_list(n: usize) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = rust_iso3166::ALL
        .iter()
        .map(|c| (c.alpha2.to_ascii_lowercase(), c.name.to_owned()))
        .collect();
    all.sort();
    all.truncate(n);
    all
}

/// Inserts reference rows that are missing and returns `(id, code)` for the given codes, in order.
async fn upsert_codes(
    pool: &PgPool,
    table: &'static str,
    rows: &[(String, String)],
) -> Result<Vec<i32>, sqlx::Error> {
    let codes: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    // `table` is one of three literals chosen in this module, never input.
    let insert = format!(
        "INSERT INTO {table} (code, name) SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT (code) DO NOTHING"
    );
    sqlx::query(&insert)
        .bind(&codes)
        .bind(&names)
        .execute(pool)
        .await?;
    let select = format!(
        "SELECT t.id FROM unnest($1::text[]) WITH ORDINALITY AS want(code, ord)
           JOIN {table} t ON t.code = want.code ORDER BY want.ord"
    );
    sqlx::query_scalar(&select)
        .bind(&codes)
        .fetch_all(pool)
        .await
}

/// Seeds the catalog at `scale`. Re-running adds nothing that is already there.
pub async fn seed(pool: &PgPool, scale: Scale) -> Result<SeedReport, sqlx::Error> {
    let started = Instant::now();
    let (np, nc, ns) = scale.dims();
    let providers: Vec<(String, String)> = PROVIDERS[..np]
        .iter()
        .map(|(c, n)| ((*c).to_owned(), (*n).to_owned()))
        .collect();
    let provider_ids = upsert_codes(pool, "providers", &providers).await?;
    let country_ids = upsert_codes(pool, "countries", &country_list(nc)).await?;
    let service_ids = upsert_codes(pool, "services", &service_list(ns)).await?;

    let total = (np * nc * ns) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("prices");

    let mut tx = pool.begin().await?;
    // An empty table takes the rows straight from COPY (the fast path, ~5x quicker at the large
    // scale); otherwise they go through a staging table and `ON CONFLICT DO NOTHING`, so
    // re-seeding keeps what is there (including prices an admin changed).
    let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM prices)")
        .fetch_one(&mut *tx)
        .await?;
    let target = if empty { "prices" } else { "seed_prices" };
    // Into an empty table, building the secondary indexes once at the end beats updating them
    // row by row. Their definitions are read from the catalog, so the migrations stay the one
    // place that says which indexes exist.
    let mut rebuild: Vec<String> = Vec::new();
    if empty {
        rebuild = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes
              WHERE schemaname = current_schema() AND tablename = 'prices'
                AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        )
        .fetch_all(&mut *tx)
        .await?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT indexname FROM pg_indexes
              WHERE schemaname = current_schema() AND tablename = 'prices'
                AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        )
        .fetch_all(&mut *tx)
        .await?;
        for name in names {
            sqlx::query(&format!("DROP INDEX \"{name}\""))
                .execute(&mut *tx)
                .await?;
        }
        // Same for foreign keys: checked once per constraint by one join when re-added, instead
        // of one trigger call per row and key.
        let fks: Vec<(String, String)> = sqlx::query_as(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
              WHERE conrelid = 'prices'::regclass AND contype = 'f'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (name, def) in fks {
            sqlx::query(&format!("ALTER TABLE prices DROP CONSTRAINT \"{name}\""))
                .execute(&mut *tx)
                .await?;
            rebuild.push(format!(
                "ALTER TABLE prices ADD CONSTRAINT \"{name}\" {def}"
            ));
        }
    } else {
        sqlx::query(
            "CREATE TEMP TABLE seed_prices (provider_id INT, country_id INT, service_id INT,
                                            price_cents BIGINT, stock BIGINT) ON COMMIT DROP",
        )
        .execute(&mut *tx)
        .await?;
    }
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY {target} (provider_id, country_id, service_id, price_cents, stock) FROM STDIN (FORMAT csv)"
        ))
        .await?;
    let mut buf = String::with_capacity(1 << 20);
    for (pi, pid) in provider_ids.iter().enumerate() {
        for (ci, cid) in country_ids.iter().enumerate() {
            for (si, sid) in service_ids.iter().enumerate() {
                if let Some((price, stock)) = offer(pi, ci, si) {
                    let _ = writeln!(buf, "{pid},{cid},{sid},{price},{stock}");
                }
            }
            if buf.len() > (1 << 20) - 4096 {
                copy.send(buf.as_bytes()).await?;
                buf.clear();
            }
            bar.inc(ns as u64);
        }
    }
    copy.send(buf.as_bytes()).await?;
    copy.finish().await?;
    if empty {
        bar.set_message("indexing");
        sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
            .execute(&mut *tx)
            .await?;
        for def in rebuild {
            sqlx::query(&def).execute(&mut *tx).await?;
        }
    } else {
        bar.set_message("merging");
        sqlx::query(
            "INSERT INTO prices (provider_id, country_id, service_id, price_cents, stock)
             SELECT provider_id, country_id, service_id, price_cents, stock FROM seed_prices
             ON CONFLICT DO NOTHING",
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    // The number pool purchases draw from: a fixed count per provider and country.
    sqlx::query(
        "INSERT INTO numbers (provider_id, country_id, phone_number)
         SELECT pr, co, format('+999%s%s%s', lpad(pr::text, 2, '0'), lpad(co::text, 3, '0'), lpad(i::text, 5, '0'))
           FROM unnest($1::int[]) AS pr, unnest($2::int[]) AS co, generate_series(1, $3) AS i
         ON CONFLICT (phone_number) DO NOTHING",
    )
    .bind(&provider_ids)
    .bind(&country_ids)
    .bind(scale.numbers_per_pool())
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE providers, countries, services, prices, numbers")
        .execute(pool)
        .await?;
    bar.finish_and_clear();

    let prices: i64 = sqlx::query_scalar("SELECT count(*) FROM prices")
        .fetch_one(pool)
        .await?;
    Ok(SeedReport {
        providers: np,
        countries: nc,
        services: ns,
        prices,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_deterministic_and_mostly_present() {
        assert_eq!(offer(1, 2, 3), offer(1, 2, 3));
        let present = (0..1000).filter(|&s| offer(0, 0, s).is_some()).count();
        assert!((900..=990).contains(&present), "{present}");
        for s in 0..200 {
            if let Some((price, stock)) = offer(2, 5, s) {
                assert!((5..=500).contains(&price) && (0..5000).contains(&stock));
            }
        }
    }

    #[test]
    fn codes_are_valid_slugs() {
        for (code, _) in service_list(700).iter().chain(country_list(180).iter()) {
            assert!(shared::Slug::parse(code).is_ok(), "{code}");
        }
        assert_eq!(country_list(180).len(), 180);
    }
}
