-- Amounts in base units (18 decimals) outgrow SQLite's 64-bit integers: keep
-- price_held as decimal text, as the ledger does. SQLite cannot change a
-- column's type in place, so the table is copied.
CREATE TABLE "intents_v2" (
   "guid" TEXT PRIMARY KEY,
   "user" TEXT NOT NULL,
   "intent" TEXT NOT NULL,
   "state" TEXT NOT NULL,
   "query" BLOB NOT NULL,
   "price_held" TEXT NOT NULL,
   "created" REAL NOT NULL,
   "finished" REAL,
   "outcome" BLOB
);
INSERT INTO intents_v2 SELECT guid, user, intent, state, query, CAST(price_held AS TEXT), created, finished, outcome
    FROM intents;
DROP TABLE intents;
ALTER TABLE intents_v2 RENAME TO intents;
CREATE INDEX intents_unfinished ON intents(created) WHERE state = 'queued';
