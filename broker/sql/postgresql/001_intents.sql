-- The intent journal: one row per intent (broker/pg/journal.py).
CREATE TABLE intents (
    guid text PRIMARY KEY,
    "user" text NOT NULL,
    intent text NOT NULL,
    state text NOT NULL,
    query bytea NOT NULL,
    price_held numeric(78, 0) NOT NULL,  -- base units: 18 decimals outgrow bigint
    created double precision NOT NULL,
    finished double precision,
    outcome bytea
);
-- Unfinished intents for a broker's start-up reconcile; a user's history, newest first.
CREATE INDEX intents_unfinished ON intents (created) WHERE state = 'queued';
CREATE INDEX intents_by_user ON intents ("user", created DESC);
