-- Version 4: index entries and their sharded counts (set_index; commit_writes and commit_one
-- take the index parameters; their functions are re-created from functions.sql).

CREATE TABLE {schema}.index_entries (
    instance_id text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    PRIMARY KEY (instance_id, name)
);
CREATE INDEX index_order ON {schema}.index_entries (name, key, instance_id);

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
