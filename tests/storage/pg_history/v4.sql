-- Schema version 4: index entries and counts.
-- Frozen: the statements its migration ran, as that release ran them, after v1.sql to v3.sql
-- ({schema}: the quoted schema name; the meta table and the version row are made
-- apart). Test data for tests/storage/test_postgres_schema.py: never edit; when a
-- release changes the schema, add its version's file.

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
ALTER TABLE {schema}.index_counts SET (fillfactor=70, autovacuum_vacuum_scale_factor=0.01, autovacuum_vacuum_threshold=100, autovacuum_analyze_scale_factor=0.02, autovacuum_vacuum_cost_delay=0);
CREATE FUNCTION {schema}.set_index(
    p_ids text[], p_entry_ids text[], p_names text[], p_keys text[]
) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_removed text[];
    v_added text[];
    v_shard integer := pg_backend_pid() % 16;
BEGIN
    WITH gone AS (
        DELETE FROM {schema}.index_entries AS e WHERE e.instance_id = ANY (p_ids)
        RETURNING e.name
    )
    SELECT array_agg(g.name) INTO v_removed FROM gone AS g;
    IF cardinality(p_entry_ids) > 0 THEN
        WITH added AS (
            INSERT INTO {schema}.index_entries AS e (instance_id, name, key)
            SELECT u.id, u.name, u.key FROM unnest(p_entry_ids, p_names, p_keys) AS u(id, name, key)
            RETURNING e.name
        )
        SELECT array_agg(a.name) INTO v_added FROM added AS a;
    END IF;
    IF v_removed IS NULL AND v_added IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO {schema}.index_counts AS c (name, shard, n)
    SELECT d.name, v_shard, sum(d.delta)
    FROM (
        SELECT r.name, -1 FROM unnest(v_removed) AS r(name)
        UNION ALL
        SELECT a.name, 1 FROM unnest(v_added) AS a(name)
    ) AS d(name, delta)
    GROUP BY d.name
    HAVING sum(d.delta) <> 0
    ORDER BY d.name
    ON CONFLICT (name, shard) DO UPDATE SET n = c.n + excluded.n;
    IF v_removed IS NOT NULL THEN
        DELETE FROM {schema}.index_counts AS c
        WHERE c.name = ANY (v_removed) AND c.shard = v_shard AND c.n = 0;
    END IF;
END
$fn$;
DROP FUNCTION {schema}.commit_writes(
    text[], text[], bigint[], text[], text[], text[], text[], text[], bytea[],
    text[], timestamptz[], boolean, text, text[], text[]
);
DROP FUNCTION {schema}.commit_one(
    text, text, bigint, boolean, text[], text[], bytea[], boolean, timestamptz, boolean, text
);
CREATE FUNCTION {schema}.commit_writes(
    p_lease_ids text[], p_owners text[], p_generations bigint[],
    p_purge_ids text[],
    p_delete_ids text[], p_delete_keys text[],
    p_put_ids text[], p_put_keys text[], p_put_values bytea[],
    p_alarm_ids text[], p_alarm_ats timestamptz[],
    p_release boolean, p_channel text,
    p_guard_ids text[], p_guard_keys text[],
    p_index_ids text[], p_entry_ids text[], p_entry_names text[], p_entry_keys text[]
) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_lost integer;
    v_key integer;
BEGIN
    -- Record locks first: per instance whose records change or are guarded, in key order.
    FOR v_key IN
        SELECT DISTINCT hashtext(u.id) AS h
        FROM unnest(p_purge_ids || p_delete_ids || p_put_ids || p_guard_ids) AS u(id)
        ORDER BY h
    LOOP
        PERFORM pg_advisory_xact_lock(1685418593, v_key);
    END LOOP;
    -- Alarm rows next (a concurrent claim holds them while it waits for lease rows).
    PERFORM 1 FROM {schema}.alarms AS a
    WHERE a.instance_id = ANY (p_alarm_ids)
    ORDER BY a.instance_id
    FOR UPDATE;
    PERFORM 1 FROM {schema}.leases AS l
    WHERE l.instance_id = ANY (p_lease_ids)
    ORDER BY l.instance_id
    FOR UPDATE;
    SELECT f.n INTO v_lost
    FROM unnest(p_lease_ids, p_owners, p_generations) WITH ORDINALITY AS f(id, owner, gen, n)
    WHERE NOT EXISTS (
        SELECT 1 FROM {schema}.leases AS l
        WHERE l.instance_id = f.id AND l.owner = f.owner AND l.generation = f.gen
    )
    ORDER BY f.n
    LIMIT 1;
    IF v_lost IS NOT NULL THEN
        RETURN v_lost;  -- fenced: nothing written
    END IF;
    IF cardinality(p_guard_ids) > 0 THEN
        -- A new statement after the locks: sees every commit that held one until now.
        SELECT g.n INTO v_lost
        FROM unnest(p_guard_ids, p_guard_keys) WITH ORDINALITY AS g(id, key, n)
        WHERE EXISTS (
            SELECT 1 FROM {schema}.records AS r WHERE r.instance_id = g.id AND r.key = g.key
        )
        ORDER BY g.n
        LIMIT 1;
        IF v_lost IS NOT NULL THEN
            RETURN -v_lost;  -- guarded: nothing written
        END IF;
    END IF;
    IF cardinality(p_purge_ids) > 0 THEN
        DELETE FROM {schema}.records AS r WHERE r.instance_id = ANY (p_purge_ids);
    END IF;
    IF cardinality(p_delete_ids) > 0 THEN
        DELETE FROM {schema}.records AS r
        USING unnest(p_delete_ids, p_delete_keys) AS d(id, key)
        WHERE r.instance_id = d.id AND r.key = d.key;
    END IF;
    IF cardinality(p_put_ids) > 0 THEN
        INSERT INTO {schema}.records AS r (instance_id, key, value)
        SELECT p.id, p.key, p.value
        FROM unnest(p_put_ids, p_put_keys, p_put_values) AS p(id, key, value)
        ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value;
    END IF;
    IF cardinality(p_alarm_ids) > 0 THEN
        DELETE FROM {schema}.alarms AS a
        USING unnest(p_alarm_ids, p_alarm_ats) AS c(id, at)
        WHERE a.instance_id = c.id AND c.at IS NULL;
        INSERT INTO {schema}.alarms AS a (instance_id, due_at)
        SELECT c.id, c.at FROM unnest(p_alarm_ids, p_alarm_ats) AS c(id, at)
        WHERE c.at IS NOT NULL
        ON CONFLICT (instance_id) DO UPDATE SET due_at = excluded.due_at
            WHERE a.due_at IS DISTINCT FROM excluded.due_at;
    END IF;
    IF cardinality(p_index_ids) > 0 THEN
        PERFORM {schema}.set_index(p_index_ids, p_entry_ids, p_entry_names, p_entry_keys);
    END IF;
    IF p_release THEN
        DELETE FROM {schema}.leases AS l WHERE l.instance_id = ANY (p_lease_ids);
    END IF;
    IF cardinality(p_alarm_ids) > 0 OR (p_release AND cardinality(p_lease_ids) > 0) THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
    RETURN NULL;
END
$fn$;
CREATE FUNCTION {schema}.commit_one(
    p_id text, p_owner text, p_generation bigint,
    p_purge boolean, p_delete_keys text[], p_put_keys text[], p_put_values bytea[],
    p_alarm_change boolean, p_alarm_at timestamptz,
    p_release boolean, p_channel text,
    p_index boolean, p_index_names text[], p_index_keys text[]
) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_purge OR cardinality(p_delete_keys) > 0 OR cardinality(p_put_keys) > 0 THEN
        PERFORM pg_advisory_xact_lock(1685418593, hashtext(p_id));
    END IF;
    IF p_alarm_change THEN
        PERFORM 1 FROM {schema}.alarms AS a WHERE a.instance_id = p_id FOR UPDATE;
    END IF;
    IF p_release THEN
        DELETE FROM {schema}.leases AS l
        WHERE l.instance_id = p_id AND l.owner = p_owner AND l.generation = p_generation;
    ELSE
        PERFORM 1 FROM {schema}.leases AS l
        WHERE l.instance_id = p_id AND l.owner = p_owner AND l.generation = p_generation
        FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        RETURN true;  -- fenced: nothing written
    END IF;
    IF p_purge THEN
        DELETE FROM {schema}.records AS r WHERE r.instance_id = p_id;
    END IF;
    IF cardinality(p_delete_keys) > 0 THEN
        DELETE FROM {schema}.records AS r
        WHERE r.instance_id = p_id AND r.key = ANY (p_delete_keys);
    END IF;
    IF cardinality(p_put_keys) > 0 THEN
        INSERT INTO {schema}.records AS r (instance_id, key, value)
        SELECT p_id, p.key, p.value FROM unnest(p_put_keys, p_put_values) AS p(key, value)
        ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value;
    END IF;
    IF p_alarm_change THEN
        IF p_alarm_at IS NULL THEN
            DELETE FROM {schema}.alarms AS a WHERE a.instance_id = p_id;
        ELSE
            INSERT INTO {schema}.alarms AS a (instance_id, due_at) VALUES (p_id, p_alarm_at)
            ON CONFLICT (instance_id) DO UPDATE SET due_at = excluded.due_at
                WHERE a.due_at IS DISTINCT FROM excluded.due_at;
        END IF;
    END IF;
    IF p_index OR p_purge THEN
        PERFORM {schema}.set_index(
            ARRAY[p_id],
            array_fill(p_id, ARRAY[coalesce(cardinality(p_index_names), 0)]),
            p_index_names, p_index_keys
        );
    END IF;
    IF p_alarm_change OR p_release THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
    RETURN false;
END
$fn$;
