-- Accounts shared by every broker of the realm (broker/pg/accounts.py): the
-- SQLite broker keeps the same tables in broker.accounts.db. Addresses are
-- compared case-insensitively (checksums differ only in case).
CREATE TABLE profiles (
    address text NOT NULL,
    nickname text NOT NULL,
    updated double precision NOT NULL
);
CREATE UNIQUE INDEX profiles_address ON profiles (lower(address));
CREATE UNIQUE INDEX profiles_nickname ON profiles (lower(nickname));

CREATE TABLE bans (
    address text NOT NULL,
    reason text NOT NULL,
    by text NOT NULL,
    created double precision NOT NULL
);
CREATE UNIQUE INDEX bans_address ON bans (lower(address));

CREATE TABLE sysops (
    address text NOT NULL,
    granted_by text NOT NULL,
    created double precision NOT NULL
);
CREATE UNIQUE INDEX sysops_address ON sysops (lower(address));

CREATE TABLE audit (
    id bigserial PRIMARY KEY,
    ts double precision NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    detail text NOT NULL,
    outcome text NOT NULL
);

CREATE TABLE trust (
    address text NOT NULL,
    completed bigint NOT NULL,
    aborted bigint NOT NULL,
    maintenance text
);
CREATE UNIQUE INDEX trust_address ON trust (lower(address));

-- Nonces of signed REST requests still inside their window (broker/signed.py):
-- one broker's record refuses a replay on every other.
CREATE TABLE request_nonces (
    key text PRIMARY KEY,
    until double precision NOT NULL
);
CREATE INDEX request_nonces_until ON request_nonces (until);
