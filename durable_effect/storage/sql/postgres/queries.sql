-- PostgresStorage's statements, by name (`-- name: <name>` starts one; the comment lines
-- right after it say what it is for; it ends at the next name). Loaded by _postgres_sql.
--
-- Placeholders, filled when the storage is built (psycopg.sql composition): {schema} the
-- quoted schema name; {channel} the notify channel (a string literal, or an identifier in
-- LISTEN); {functions} the names of the functions functions.sql creates (a literal);
-- {lease_now} and {lease_until} where a lease operation takes "now" and the new expiry —
-- with lease_clock="caller" two parameters (the caller's now and now + ttl), with
-- lease_clock="server" the server's statement_timestamp() and one parameter, the ttl.
-- Values always travel as parameters: %s, %b (binary format), %(name)s.

-- -- the schema and its version ----------------------------------------------------------

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {schema}

-- name: create_meta
CREATE TABLE IF NOT EXISTS {schema}.meta (
    key text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
)

-- name: lock_migrations
-- Held for the whole migration transaction (key: MIGRATION_LOCK_ID).
SELECT pg_advisory_xact_lock(%s)

-- name: meta_exists
SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = 'meta'

-- name: select_version
SELECT value FROM {schema}.meta WHERE key = 'schema_version'

-- name: set_version
INSERT INTO {schema}.meta (key, value) VALUES ('schema_version', %s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value

-- name: drop_functions
-- Before a migration creates them again from functions.sql: every function of the schema
-- with the name of one functions.sql creates ({functions}, the list of those names),
-- whatever its arguments. Any other function in the schema is left alone (a migration that
-- retires a function drops it itself).
DO $drop$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = '{schema}'::regnamespace
          AND p.proname::text = ANY ({functions}::text[])
    LOOP
        EXECUTE 'DROP FUNCTION ' || v_function::text;
    END LOOP;
END
$drop$

-- name: set_time_zone
-- Every pooled connection reads instants in UTC (so year 1 and 9999 round-trip).
SET TIME ZONE 'UTC'

-- name: listen
LISTEN {channel}

-- -- the operations ----------------------------------------------------------------------

-- name: acquire
SELECT * FROM {schema}.acquire(%s::text[], %s::text, {lease_now}, {lease_until}, {channel})

-- name: acquire_one
-- The hottest calls take {channel} as a literal: one parameter less to adapt.
SELECT * FROM {schema}.acquire_one(%b::text, %b::text, {lease_now}, {lease_until}, {channel})

-- name: commit_one
-- Empty arrays may be passed as NULL (cardinality(NULL) > 0 is not true). Parameters in
-- binary format: nothing to escape in the record values. With feed entries it is sent as
--   WITH c AS MATERIALIZED (SELECT <this call> AS lost)
--   SELECT c.lost, {schema}.append_feed(NOT c.lost, <entries>, <retain>) FROM c
-- so they are appended in the same statement, so the same transaction, unless fenced
-- (_postgres_sql.with_feed; commit likewise, appending when c.lost IS NULL).
SELECT {schema}.commit_one(
    %b::text, %b::text, %b::bigint,
    %b::boolean, %b::text[], %b::text[], %b::bytea[],
    %b::boolean, %b::timestamptz,
    %b::boolean, {channel},
    %b::boolean, %b::text[], %b::text[]
)

-- name: claim_due
SELECT * FROM {schema}.claim_due(%s, %s::text, {lease_until}, %s::integer, {lease_now})

-- name: commit
SELECT {schema}.commit_writes(
    %s::text[], %s::text[], %s::bigint[],
    %s::text[],
    %s::text[], %s::text[],
    %s::text[], %s::text[], %s::bytea[],
    %s::text[], %s::timestamptz[],
    %s::boolean, %s::text,
    %s::text[], %s::text[],
    %s::text[], %s::text[], %s::text[], %s::text[]
)

-- name: sequence_feed
-- Number up to %s committed, unnumbered feed entries (its own transaction).
SELECT {schema}.sequence_feed(%s::integer)

-- name: read_feed
SELECT f.seq, f.data FROM {schema}.feed AS f
WHERE f.seq > %s::bigint AND f.seq IS NOT NULL
ORDER BY f.seq
LIMIT %s::integer

-- name: feed_head
SELECT coalesce(max(f.seq), 0) FROM {schema}.feed AS f WHERE f.seq IS NOT NULL

-- name: extend
UPDATE {schema}.leases SET expires_at = {lease_until}
WHERE instance_id = %s AND owner = %s AND generation = %s
RETURNING 1

-- name: release
-- Locks the leases in id order (the lock order), deletes them, notifies if any went.
WITH mine AS (
    SELECT l.instance_id FROM {schema}.leases AS l
    JOIN unnest(%s::text[], %s::text[], %s::bigint[]) AS f(id, owner, gen)
        ON l.instance_id = f.id AND l.owner = f.owner AND l.generation = f.gen
    ORDER BY l.instance_id
    FOR UPDATE OF l
), gone AS (
    DELETE FROM {schema}.leases AS l USING mine AS m
    WHERE l.instance_id = m.instance_id
    RETURNING 1
)
SELECT pg_notify(%s::text, '') WHERE EXISTS (SELECT 1 FROM gone)

-- name: load
SELECT u.id, a.due_at, r.key, r.value
FROM unnest(%s::text[]) AS u(id)
LEFT JOIN {schema}.alarms AS a ON a.instance_id = u.id
LEFT JOIN {schema}.records AS r ON r.instance_id = u.id

-- name: next_alarm_at
SELECT min(due_at) FROM {schema}.alarms

-- name: list_instances
-- starts_with keeps % and _ literal; the range conditions (upper is the least string above
-- every id with the prefix, or NULL) let the primary keys serve the prefix. after is ''
-- when absent (every id is greater), limit NULL for no limit.
SELECT ids.instance_id FROM (
    SELECT r.instance_id FROM {schema}.records AS r
    WHERE r.instance_id >= %(prefix)s::text AND r.instance_id > %(after)s::text
      AND (%(upper)s::text IS NULL OR r.instance_id < %(upper)s::text)
      AND starts_with(r.instance_id, %(prefix)s::text)
    UNION
    SELECT a.instance_id FROM {schema}.alarms AS a
    WHERE a.instance_id >= %(prefix)s::text AND a.instance_id > %(after)s::text
      AND (%(upper)s::text IS NULL OR a.instance_id < %(upper)s::text)
      AND starts_with(a.instance_id, %(prefix)s::text)
) AS ids
ORDER BY ids.instance_id
LIMIT %(limit)s::bigint

-- name: scan_index_asc
-- Per name, at most limit entries of index_order past after (after_key, after_id) up to
-- until, merged (a position several names hold once, with the least name). Every bound is
-- always given (the callers pass the extremes for "none"), so the plan is one index range
-- per name whatever the values: a generic plan of "x IS NULL OR ..." could not use it.
SELECT min(e.name), e.key, e.instance_id
FROM unnest(%(names)s::text[]) AS n(name)
CROSS JOIN LATERAL (
    SELECT x.name, x.key, x.instance_id FROM {schema}.index_entries AS x
    WHERE x.name = n.name
      AND (x.key, x.instance_id) > (%(after_key)s::text, %(after_id)s::text)
      AND x.key <= %(until)s::text
    ORDER BY x.key, x.instance_id
    LIMIT %(limit)s::bigint
) AS e
GROUP BY e.key, e.instance_id
ORDER BY e.key, e.instance_id
LIMIT %(limit)s::bigint

-- name: scan_index_desc
-- scan_index_asc, backwards.
SELECT min(e.name), e.key, e.instance_id
FROM unnest(%(names)s::text[]) AS n(name)
CROSS JOIN LATERAL (
    SELECT x.name, x.key, x.instance_id FROM {schema}.index_entries AS x
    WHERE x.name = n.name
      AND (x.key, x.instance_id) < (%(after_key)s::text, %(after_id)s::text)
      AND x.key >= %(until)s::text
    ORDER BY x.key DESC, x.instance_id DESC
    LIMIT %(limit)s::bigint
) AS e
GROUP BY e.key, e.instance_id
ORDER BY e.key DESC, e.instance_id DESC
LIMIT %(limit)s::bigint

-- name: count_index
SELECT c.name, sum(c.n)::bigint FROM {schema}.index_counts AS c
WHERE c.name = ANY (%s::text[])
GROUP BY c.name

-- name: load_index
-- The index entries of the given instances (for the back-fill, which compares them).
SELECT e.instance_id, e.name, e.key FROM {schema}.index_entries AS e
WHERE e.instance_id = ANY (%s::text[])
