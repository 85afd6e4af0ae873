-- The intent journal: one row per intent (broker/journal.py).
CREATE TABLE IF NOT EXISTS "intents" (
   "guid" TEXT PRIMARY KEY,
   "user" TEXT NOT NULL,
   "intent" TEXT NOT NULL,
   "state" TEXT NOT NULL,
   "query" BLOB NOT NULL,
   "price_held" INTEGER NOT NULL,
   "created" REAL NOT NULL,
   "finished" REAL,
   "outcome" BLOB
);
-- Only unfinished intents are indexed: the restart scan needs them, and a full
-- index on state would cost every write another page.
CREATE INDEX IF NOT EXISTS intents_unfinished ON intents(created) WHERE state = 'queued';
