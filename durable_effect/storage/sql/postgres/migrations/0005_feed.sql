-- Version 5: the event feed (append_feed and sequence_feed are re-created from
-- functions.sql). A commit only inserts its entries (id from feed_ids, seq NULL: no lock
-- held); readers number them (seq from feed_seqs), one numbering at a time.

CREATE SEQUENCE {schema}.feed_ids AS bigint;
CREATE SEQUENCE {schema}.feed_seqs AS bigint;
CREATE TABLE {schema}.feed (
    id bigint PRIMARY KEY DEFAULT nextval('{schema}.feed_ids'),
    seq bigint,
    data bytea NOT NULL
);
CREATE UNIQUE INDEX feed_seq ON {schema}.feed (seq) WHERE seq IS NOT NULL;
CREATE INDEX feed_unnumbered ON {schema}.feed (id) WHERE seq IS NULL;
ALTER TABLE {schema}.feed SET (
    autovacuum_vacuum_scale_factor=0.01,
    autovacuum_vacuum_threshold=100,
    autovacuum_analyze_scale_factor=0.02,
    autovacuum_vacuum_cost_delay=0
);
