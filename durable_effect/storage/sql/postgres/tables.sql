-- PostgresStorage's tables, as they are today (schema version 6). A fresh database runs this
-- file, then functions.sql; an older one runs the migrations/ after its version instead.
-- {schema} is the quoted schema name; nothing else is interpolated. The meta table
-- (key, value; the row 'schema_version') is made before, by the migration code.
--
-- Ids, keys and index names are text COLLATE "C": they compare by code point, as Python
-- strings do, whatever the database's collation, and prefix ranges can use the keys.

-- One row per record of an instance.
CREATE TABLE {schema}.records (
    instance_id text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (instance_id, key)
);

-- At most one alarm per instance; claim_due walks alarms_due, oldest first, ties by id.
CREATE TABLE {schema}.alarms (
    instance_id text COLLATE "C" PRIMARY KEY,
    due_at timestamptz NOT NULL
);
CREATE INDEX alarms_due ON {schema}.alarms (due_at, instance_id);

-- Live (or expired but not taken over) leases; released ones are deleted.
CREATE TABLE {schema}.leases (
    instance_id text COLLATE "C" PRIMARY KEY,
    owner text NOT NULL,
    generation bigint NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Every lease grant draws its generation here: generations only grow, store-wide.
CREATE SEQUENCE {schema}.generations AS bigint;

-- The hot tables turn over fast (every claim writes lease rows, every commit deletes them
-- and moves alarms): room on each page for same-page (HOT) updates, and an autovacuum that
-- starts after 1 % dead rows, unthrottled. (_postgres_sql.HOT_TABLE_OPTIONS lists them.)
ALTER TABLE {schema}.alarms SET (
    fillfactor=70,
    autovacuum_vacuum_scale_factor=0.01,
    autovacuum_vacuum_threshold=100,
    autovacuum_analyze_scale_factor=0.02,
    autovacuum_vacuum_cost_delay=0
);
ALTER TABLE {schema}.leases SET (
    fillfactor=70,
    autovacuum_vacuum_scale_factor=0.01,
    autovacuum_vacuum_threshold=100,
    autovacuum_analyze_scale_factor=0.02,
    autovacuum_vacuum_cost_delay=0
);

-- Index entries: at most one per (instance, index name); scan_index reads index_order.
CREATE TABLE {schema}.index_entries (
    instance_id text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    PRIMARY KEY (instance_id, name)
);
CREATE INDEX index_order ON {schema}.index_entries (name, key, instance_id);

-- Each index's size, in up to 16 shards (by backend pid); count_index sums them.
CREATE TABLE {schema}.index_counts (
    name text COLLATE "C" NOT NULL,
    shard integer NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (name, shard)
);
ALTER TABLE {schema}.index_counts SET (
    fillfactor=70,
    autovacuum_vacuum_scale_factor=0.01,
    autovacuum_vacuum_threshold=100,
    autovacuum_analyze_scale_factor=0.02,
    autovacuum_vacuum_cost_delay=0
);

-- The event feed: a commit inserts its entries (id from feed_ids, seq NULL); readers give
-- the committed ones their seq (from feed_seqs), in id order, one numbering at a time, so a
-- seq never appears behind one already read. Turned over fast: vacuumed early, unthrottled.
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
