-- The realm's $9000 journal (ledger/journal.py), shared by every paid broker of
-- the realm, in a schema of its own: the same table names and rows as the
-- SQLite journal, so one body of SQL and one row hash serve both.
-- Amounts stay decimal text (18-decimal base units outgrow bigint); ids are
-- assigned by the one writer holding the journal's advisory lock.
CREATE SCHEMA ledger;

CREATE TABLE ledger.txns (
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    payer TEXT,
    worker TEXT,
    amount TEXT,
    fee TEXT,
    memo TEXT,
    auth TEXT,
    entries TEXT NOT NULL,
    hash BYTEA NOT NULL
);

-- (kind, ref) of every transaction from outside (deposits, grants, vouchers...): posted once
CREATE TABLE ledger.once (
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    txn BIGINT,
    PRIMARY KEY (kind, ref)
);

CREATE VIEW ledger.entries AS
    SELECT t.id AS txn, (j.n - 1)::INTEGER AS seq, j.value ->> 0 AS account, j.value ->> 1 AS amount
    FROM ledger.txns t, jsonb_array_elements(t.entries::jsonb) WITH ORDINALITY AS j(value, n);

CREATE TABLE ledger.epochs (
    number BIGINT PRIMARY KEY,
    first_txn BIGINT NOT NULL,
    last_txn BIGINT NOT NULL,
    receipts BIGINT NOT NULL,
    root TEXT NOT NULL,
    earnings_root TEXT NOT NULL,
    earnings_total TEXT NOT NULL,
    journal_head TEXT NOT NULL,
    state TEXT NOT NULL,
    tx_hash TEXT,
    created DOUBLE PRECISION NOT NULL,
    settled DOUBLE PRECISION
);

-- chain events the watcher could not book: skipped, recorded, shown by the audit
CREATE TABLE ledger.unbooked (
    ref TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    detail TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL
);

CREATE TABLE ledger.meta (key TEXT PRIMARY KEY, value TEXT);
INSERT INTO ledger.meta (key, value) VALUES ('schema', '2');
