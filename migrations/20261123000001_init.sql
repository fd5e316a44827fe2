-- The prediction service's schema: tenants and their API keys, companies with financial
-- statements, predictions, and bulk jobs (chunks of input rows and per-row results).
-- Every table that holds tenant data carries tenant_id, and every query filters on it.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Keys are stored as SHA-256 digests: they are 256-bit random tokens, so a slow password hash
-- would add latency to every request without adding security.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash    bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'analyst', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE companies (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    symbol      text NOT NULL,
    name        text NOT NULL,
    sector      text,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Seed index: companies by symbol and tenant where active (unique: one active company per symbol).
CREATE UNIQUE INDEX companies_tenant_symbol_active ON companies (tenant_id, symbol) WHERE active;

CREATE TABLE financial_statements (
    id                      uuid PRIMARY KEY,
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    company_id              uuid NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    period                  text NOT NULL,
    total_assets            double precision NOT NULL,
    total_liabilities       double precision NOT NULL,
    current_assets          double precision NOT NULL,
    current_liabilities     double precision NOT NULL,
    retained_earnings       double precision NOT NULL,
    ebit                    double precision NOT NULL,
    net_income              double precision NOT NULL,
    previous_net_income     double precision NOT NULL,
    funds_from_operations   double precision NOT NULL,
    book_equity             double precision NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, period)
);

CREATE TABLE predictions (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    company_id      uuid NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    statement_id    uuid REFERENCES financial_statements (id) ON DELETE SET NULL,
    input_hash      bytea NOT NULL,
    model_version   text NOT NULL,
    probability     double precision NOT NULL,
    risk_level      text NOT NULL,
    o_score         double precision NOT NULL,
    z_score         double precision NOT NULL,
    zone            text NOT NULL,
    ratios          jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- Seed index: predictions by company and date descending, covering probability and risk level
-- so the history list is answered from the index.
CREATE INDEX predictions_company_created ON predictions (company_id, created_at DESC, id DESC)
    INCLUDE (probability, risk_level, tenant_id);

CREATE TABLE bulk_jobs (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status          text NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    priority        smallint NOT NULL,
    total_rows      integer NOT NULL,
    processed_rows  integer NOT NULL DEFAULT 0,
    failed_rows     integer NOT NULL DEFAULT 0,
    chunks_total    integer NOT NULL,
    chunks_done     integer NOT NULL DEFAULT 0,
    chunks_dead     integer NOT NULL DEFAULT 0,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
-- Seed index: bulk jobs by tenant, status and creation time while pending or processing.
CREATE INDEX bulk_jobs_tenant_status_created ON bulk_jobs (tenant_id, status, created_at)
    WHERE status IN ('pending', 'processing');

-- The input rows live in PostgreSQL, not in the Redis message: a queue entry only names a chunk,
-- so an evicted or lost queue entry never loses input.
CREATE TABLE bulk_job_chunks (
    job_id      uuid NOT NULL REFERENCES bulk_jobs (id) ON DELETE CASCADE,
    chunk_no    integer NOT NULL,
    first_row   integer NOT NULL,
    rows        jsonb NOT NULL,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
    attempts    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, chunk_no)
);

-- One row per input row; the primary key makes a retried chunk's writes idempotent.
CREATE TABLE bulk_job_results (
    job_id          uuid NOT NULL REFERENCES bulk_jobs (id) ON DELETE CASCADE,
    row_no          integer NOT NULL,
    reference       text,
    probability     double precision,
    risk_level      text,
    zone            text,
    error           text,
    PRIMARY KEY (job_id, row_no)
);
