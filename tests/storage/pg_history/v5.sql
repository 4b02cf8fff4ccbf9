-- Schema version 5: the event feed.
-- Frozen: the statements its migration ran, as that release ran them, after v1.sql to v4.sql
-- ({schema}: the quoted schema name; the meta table and the version row are made
-- apart). Test data for tests/storage/test_postgres_schema.py: never edit; when a
-- release changes the schema, add its version's file.

CREATE SEQUENCE {schema}.feed_ids AS bigint;
CREATE SEQUENCE {schema}.feed_seqs AS bigint;
CREATE TABLE {schema}.feed (
    id bigint PRIMARY KEY DEFAULT nextval('{schema}.feed_ids'),
    seq bigint,
    data bytea NOT NULL
);
CREATE UNIQUE INDEX feed_seq ON {schema}.feed (seq) WHERE seq IS NOT NULL;
CREATE INDEX feed_unnumbered ON {schema}.feed (id) WHERE seq IS NULL;
ALTER TABLE {schema}.feed SET (autovacuum_vacuum_scale_factor=0.01, autovacuum_vacuum_threshold=100, autovacuum_analyze_scale_factor=0.02, autovacuum_vacuum_cost_delay=0);
CREATE FUNCTION {schema}.append_feed(p_apply boolean, p_feed bytea[], p_retain integer)
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n bigint := coalesce(cardinality(p_feed), 0);
    v_step bigint := greatest(p_retain / 10, 1);
    v_last bigint;
BEGIN
    IF NOT p_apply OR v_n = 0 THEN
        RETURN;
    END IF;
    INSERT INTO {schema}.feed (data)
    SELECT f.d FROM unnest(p_feed) WITH ORDINALITY AS f(d, n) ORDER BY f.n;
    v_last := currval('{schema}.feed_ids');
    -- Every tenth of ``retain`` appended: delete a bounded batch of what is older than the
    -- newest ``retain`` (skipped while a numbering runs; the next trim takes twice a step).
    IF v_last > p_retain AND v_last / v_step <> (v_last - v_n) / v_step
            AND pg_try_advisory_xact_lock(7238817738723255652) THEN
        DELETE FROM {schema}.feed AS f WHERE f.id IN (
            SELECT o.id FROM {schema}.feed AS o
            WHERE o.id <= v_last - p_retain
            ORDER BY o.id
            LIMIT 2 * v_step + v_n
        );
    END IF;
END
$fn$;
CREATE FUNCTION {schema}.sequence_feed(p_limit integer) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {schema}.feed AS f WHERE f.seq IS NULL)
            OR NOT pg_try_advisory_xact_lock(7238817738723255652) THEN
        RETURN 0;  -- nothing to number, or another numbering runs (it numbers these)
    END IF;
    -- A new statement after the lock: it sees the numbers of every earlier numbering.
    WITH todo AS (
        SELECT f.id FROM {schema}.feed AS f WHERE f.seq IS NULL ORDER BY f.id LIMIT p_limit
    ), numbered AS (
        SELECT t.id, nextval('{schema}.feed_seqs') AS seq  -- runs after the sort
        FROM todo AS t
        ORDER BY t.id
    )
    UPDATE {schema}.feed AS f SET seq = n.seq FROM numbered AS n WHERE f.id = n.id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$fn$;
