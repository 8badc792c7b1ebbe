# The task runner: the same verbs for a newcomer, a developer and CI.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

SERVICES := source scripts/services.sh
CARGO ?= cargo

.PHONY: help setup edge deploy-check dev test fleet bench bench-write-path bench-edge-ab bench-instructions stop lint fmt settings seed seed-large fuzz image image-test infra infra-synth openapi client schemathesis example browser

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: ## install toolchain pieces (Rust targets, worker-build, wrangler) and make sure PostgreSQL and Redis answer
	@scripts/toolchain.sh
	@scripts/edge-tools.sh
	@$(SERVICES)

edge: ## build the edge worker (wasm32) into edge/build/
	@scripts/edge-tools.sh
	@scripts/build-edge.sh

deploy-check: edge ## what `wrangler deploy` and `wrangler versions upload` would upload for staging and production (dry runs, no account): bindings, vars, bundle size
	@for env in staging production; do \
	  out=.local/deploy-$$env; rm -rf $$out; mkdir -p $$out; \
	  WRANGLER_SEND_METRICS=false npx wrangler deploy --dry-run --env $$env --outdir $$out > $$out.log 2>&1 \
	    || { cat $$out.log; echo "error: the dry-run deploy of $$env failed" >&2; exit 1; }; \
	  echo "== $$env"; grep -E "Total Upload|env\." $$out.log | sed 's/^/  /'; \
	  WRANGLER_SEND_METRICS=false npx wrangler versions upload --dry-run --env $$env --outdir $$out-version > $$out-version.log 2>&1 \
	    || { cat $$out-version.log; echo "error: the dry-run version upload (gradual deployments) of $$env failed" >&2; exit 1; }; \
	  echo "  wrangler versions upload --dry-run: ok (a version for a gradual deployment)"; \
	done

dev: setup ## migrate, seed (small), serve the origin on 127.0.0.1:8080 and the edge (wrangler dev) on 127.0.0.1:8787
	@$(SERVICES); \
	[ -f .dev.vars ] || cp .dev.vars.example .dev.vars; \
	export EDGE_SECRET=$$(sed -n 's/^EDGE_SECRET=//p' .dev.vars); \
	$(CARGO) build -p origin; \
	target/debug/origin seed --scale small; \
	ORIGIN_ENV=local ORIGIN_ADDR=127.0.0.1:8080 EDGE_PURGE_URL=http://127.0.0.1:8787/__edge/purge \
	  target/debug/origin serve & origin_pid=$$!; \
	trap 'kill $$origin_pid 2>/dev/null' EXIT INT TERM; \
	WRANGLER_SEND_METRICS=false npx wrangler dev --ip 127.0.0.1 --port 8787

test: setup edge infra-synth ## every test: unit, origin and edge end-to-end (real PostgreSQL, Redis, workerd), then the origin suite over TLS (PostgreSQL + Redis), and through TLS PgBouncer on a TLS Redis Cluster
	@$(SERVICES); mkdir -p .local; \
	$(CARGO) build -p origin -p nexnum-tests --bin origin --bin make-certs; \
	target/debug/make-certs .local/tls; \
	source scripts/tls-services.sh; \
	tls=(TEST_TLS_DIR=$$TLS_CERTS_DIR REDIS_CA_FILE=$$TLS_CERTS_DIR/ca.pem PG_ADMIN_URL=$$TLS_PG_ADMIN_URL); \
	$(CARGO) test --workspace --all-targets 2>&1 | tee .local/test.log; \
	tls_acl_reset; \
	echo "the origin suite again, over TLS: PostgreSQL (hostssl + SCRAM only, verify-full) and Redis (TLS only, the serving ACL user of ops/redis/serving.acl):"; \
	env "$${tls[@]}" REDIS_URL=$$TLS_REDIS_URL $(CARGO) test -p nexnum-tests --test origin 2>&1 | tee -a .local/test.log; \
	echo "the origin and cluster suites again, through PgBouncer (transaction mode, TLS both sides) on a TLS Redis Cluster (3 masters, 3 replicas):"; \
	env "$${tls[@]}" TEST_DB_BACKEND=pgbouncer PGBOUNCER_URL=$$TLS_PGBOUNCER_URL REDIS_URL=$$TLS_REDIS_CLUSTER_URL \
	  $(CARGO) test -p nexnum-tests --test origin --test cluster 2>&1 | tee -a .local/test.log; \
	denied="$$(tls_acl_denials)"; \
	if [ -n "$$denied" ]; then echo "the serving Redis user was refused commands the origin sent (ops/redis/serving.acl):"; echo "$$denied"; exit 1; \
	else echo "the serving Redis user: no command refused in the TLS passes"; fi; \
	awk '/^test result:/ {p += $$4; f += $$6} END {printf "summary: %d passed, %d failed\n", p, f}' .local/test.log

fleet: setup infra-synth ## the fleet behind HAProxy (checking as the synthesized target group does) under load: a rolling restart, a crash, a Redis master failover, then Redis and PostgreSQL each stopped 30 s (about three minutes)
	@$(SERVICES); command -v haproxy >/dev/null || { echo "error: haproxy not found (Debian: apt-get install haproxy)" >&2; exit 1; }; \
	$(CARGO) build -p origin -p nexnum-tests --bin origin; \
	timeout 600 $(CARGO) test -p nexnum-tests --test lb -- --ignored --nocapture --test-threads 1

infra-synth: ## synthesize the AWS deployment (ops/cdk, offline): staging and production, and both with PgBouncer; cdk-nag at synthesis
	@scripts/infra.sh synth

infra: ## the deployment checked offline: synthesis (cdk-nag), cfn-lint, checkov, and origin check --ecs-template on each stage
	@scripts/infra.sh check

image: ## the origin's container image (Containerfile, podman; FROM scratch, non-root)
	@scripts/build-image.sh

image-test: setup ## the image as it ships: its root file system run by chroot as its user (probe, migrate, seed, admin, serve with Sentry, purges and sync, check); needs root
	@$(SERVICES); scripts/image-rootfs.sh; \
	$(CARGO) build -p nexnum-tests --test image; \
	timeout 300 $(CARGO) test -p nexnum-tests --test image -- --ignored --nocapture

stop: ## stop the private PostgreSQL/Redis/PgBouncer servers (plaintext and TLS) that setup and make test may have started under .local/
	@pg_ctl=$$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | head -1); \
	for d in .local/postgres .local/postgres-tls/data; do \
	  if [ -s $$d/postmaster.pid ]; then \
	    if [ "$$(id -u)" = 0 ]; then runuser -u postgres -- $$pg_ctl -D $$d stop || true; else $$pg_ctl -D $$d stop || true; fi; \
	  fi; \
	done; \
	for f in .local/redis/redis.pid .local/redis-tls/redis.pid .local/pgbouncer/pgbouncer.pid .local/pgbouncer-tls/pgbouncer.pid .local/redis-cluster-tls/*/redis.pid; do \
	  [ -s "$$f" ] && kill $$(cat "$$f") 2>/dev/null || true; \
	done; \
	for p in 57001 57002 57003 57004 57005 57006; do redis-cli -p $$p shutdown nosave >/dev/null 2>&1 || true; done

lint: ## formatting, clippy (warnings are errors), wasm32 build of shared and edge
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --target wasm32-unknown-unknown -p nexnum-shared -p edge
	$(CARGO) clippy --target wasm32-unknown-unknown -p nexnum-shared -p edge -- -D warnings
	@$(MAKE) --no-print-directory client

openapi: ## regenerate openapi.json from the code, and the TypeScript types from it
	$(CARGO) run -q -p origin -- openapi > openapi.json
	cd clients/ts && npm ci --no-audit --no-fund --silent && npm run -s generate

client: ## the TypeScript client: its generated types are current, it type-checks (tsc), and its tests pass (node --test)
	@command -v npm >/dev/null || { echo "error: npm not found (Node.js 20: apt-get install nodejs npm)" >&2; exit 1; }
	cd clients/ts && npm ci --no-audit --no-fund --silent
	cd clients/ts && npx openapi-typescript ../../openapi.json --output .schema.check.d.ts >/dev/null 2>&1 \
	  && if cmp -s .schema.check.d.ts src/schema.d.ts; then rm -f .schema.check.d.ts; \
	     else rm -f .schema.check.d.ts; echo "error: clients/ts/src/schema.d.ts is stale: run make openapi" >&2; exit 1; fi
	cd clients/ts && npm run -s check
	cd clients/ts && npm test --silent

example: ## the Next.js example on http://localhost:3000 against the edge of a running `make dev`
	@command -v npm >/dev/null || { echo "error: npm not found (Node.js 20)" >&2; exit 1; }
	cd clients/ts && npm ci --no-audit --no-fund --silent
	cd examples/nextjs && npm ci --no-audit --no-fund --silent && NEXT_TELEMETRY_DISABLED=1 EDGE_URL=$${EDGE_URL:-http://localhost:8787} npx next dev --port 3000

browser: setup edge ## the example in headless Chromium against origin + wrangler dev: CORS, cookies, browser cache, 304, double-click, 429 (about a minute)
	@scripts/browser-test.sh

schemathesis: ## Schemathesis (PyPI) against a real origin with openapi.json: every operation and check, bounded
	@scripts/schemathesis.sh

settings: ## rewrite the README's settings table from the list config.rs reads (origin env)
	@scripts/readme-settings.sh

fmt: ## format the code
	$(CARGO) fmt --all

bench: setup edge ## benchmarks (release, loopback, about ten minutes; plaintext and TLS back ends): table + bench/out/results.{json,md,png}
	@scripts/bench-tools.sh
	@$(SERVICES); \
	$(CARGO) build --release -p origin -p bench; \
	$(CARGO) build -p nexnum-tests --bin make-certs; target/debug/make-certs .local/tls; \
	source scripts/tls-services.sh; \
	ulimit -n 8192 2>/dev/null || true; \
	target/release/bench run

bench-write-path: setup edge ## the write-path scenario alone (about a minute): readers at the edge while one product is bought 10 times a second and a sync changes 1 % of the prices; table + bench/out/write-path.json
	@$(SERVICES); \
	$(CARGO) build --release -p origin -p bench; \
	target/release/bench write-path

bench-edge-ab: setup edge ## the edge HIT against revision REV (e.g. make bench-edge-ab REV=b4feac2): pinned, interleaved rounds, CPU per request (about two minutes)
	@scripts/bench-tools.sh wrk
	@$(SERVICES); [ -n "$(REV)" ] || { echo "error: say which revision: make bench-edge-ab REV=<commit>" >&2; exit 2; }; \
	$(CARGO) build --release -p origin; \
	python3 bench/edge-ab/run.py $(REV)

bench-instructions: setup ## instructions per request under callgrind (a minute or two), failing if a gated scenario (warm hit, 304, L1 off) rose past bench/instructions.json (CI runs it)
	@scripts/bench-tools.sh valgrind
	@$(SERVICES); \
	$(CARGO) build --release -p origin -p bench; \
	target/release/bench instructions --gate bench/instructions.json

fuzz: ## fuzz the shared parsers for 60 s (needs the nightly toolchain and cargo-fuzz; not in CI)
	@command -v cargo-fuzz >/dev/null 2>&1 || { echo "error: install with: rustup toolchain install nightly --profile minimal && cargo +nightly install cargo-fuzz --locked" >&2; exit 1; }
	cd fuzz && cargo +nightly fuzz run parsers -- -max_total_time=$${FUZZ_SECS:-60}

seed: ## migrate and seed the small catalog into DATABASE_URL
	@$(SERVICES); $(CARGO) run -q -p origin -- seed --scale small

seed-large: ## migrate and seed the large catalog (~600k prices) into DATABASE_URL
	@$(SERVICES); $(CARGO) run -q --release -p origin -- seed --scale large
